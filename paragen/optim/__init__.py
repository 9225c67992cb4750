"""Optimizers: thin registered wrappers over `torch.optim`, built from config kwargs."""
from paragen.optim.optimizers import Adam, AdamW, SGD, parameter_groups
from paragen.registry import register_optimizer

__all__ = ["Adam", "AdamW", "SGD", "parameter_groups", "register_optimizer"]
