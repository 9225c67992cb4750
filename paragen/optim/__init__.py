"""Optimizers: thin registered wrappers over `torch.optim`, built from config kwargs."""
from paragen.optim.optimizers import Adam, AdamW, SGD, freeze_parameters, parameter_groups
from paragen.registry import register_optimizer

__all__ = ["Adam", "AdamW", "SGD", "freeze_parameters", "parameter_groups", "register_optimizer"]
