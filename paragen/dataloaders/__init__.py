"""Data loaders: turn a sampler's index batches into collated batches. Importing registers them."""
from paragen.dataloaders.loader import DataLoader
from paragen.dataloaders.streaming import StreamingDataLoader
from paragen.registry import register_dataloader

__all__ = ["DataLoader", "StreamingDataLoader", "register_dataloader"]
