"""Data loaders: turn a sampler's index batches into collated batches. Importing registers them."""
from paragen.dataloaders.loader import DataLoader

__all__ = ["DataLoader"]
