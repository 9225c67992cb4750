"""Data loaders: turn a sampler's index batches into collated batches. Importing registers them."""
from paragen.dataloaders.loader import DataLoader
from paragen.dataloaders.streaming import StreamingDataLoader

__all__ = ["DataLoader", "StreamingDataLoader"]
