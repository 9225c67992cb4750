"""Samplers: group sample indices into token-budgeted batches. Importing registers them."""
from paragen.samplers.samplers import (BucketSampler, SequentialSampler, TemperatureSampler,
                                       pack_sorted)
from paragen.registry import register_sampler

__all__ = ["BucketSampler", "SequentialSampler", "TemperatureSampler", "pack_sorted",
           "register_sampler"]
