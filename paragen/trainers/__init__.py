"""Trainers: the optimisation loop. Registered with `@register_trainer`."""
from paragen.trainers.trainer import Trainer

__all__ = ["Trainer"]
