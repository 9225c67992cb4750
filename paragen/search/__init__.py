"""Autoregressive search over a cached decoder. Registered with `@register_search`.

Every search is called as `search(decoder, memory, memory_padding, bos_id=, eos_id=, pad_id=)`
and returns `(tokens (B,T) without bos/eos, pad-filled; scores (B,))`.
"""
from paragen.search.beam import BeamSearch
from paragen.search.greedy import GreedySearch
from paragen.search.sampling import SamplingSearch
from paragen.registry import register_search

__all__ = ["BeamSearch", "GreedySearch", "SamplingSearch", "register_search"]
