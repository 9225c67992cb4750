"""Generators: the inference-time model (encoder + search), used by evaluate/generate/serve."""
from paragen.generators.nat import NATGenerator
from paragen.generators.sequence import SequenceGenerator

__all__ = ["NATGenerator", "SequenceGenerator"]
