"""Encoders: source tokens → contextual vectors. Registered with `@register_encoder`."""
from paragen.encoders.huggingface import HuggingFaceEncoder
from paragen.encoders.transformer import TransformerEncoder

__all__ = ["HuggingFaceEncoder", "TransformerEncoder"]
