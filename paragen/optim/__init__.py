"""Optimizers: thin registered wrappers over `torch.optim`, built from config kwargs."""
from paragen.optim.optimizers import Adam, AdamW, SGD, parameter_groups

__all__ = ["Adam", "AdamW", "SGD", "parameter_groups"]
