"""Trainers: the optimisation loop. Registered with `@register_trainer`."""
from paragen.trainers.trainer import Trainer
from paragen.registry import register_trainer

__all__ = ["Trainer", "register_trainer"]
