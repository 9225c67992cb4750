"""Encoders: source tokens → contextual vectors. Registered with `@register_encoder`."""
from paragen.encoders.huggingface import HuggingFaceEncoder
from paragen.encoders.transformer import TransformerEncoder
from paragen.registry import register_encoder

__all__ = ["HuggingFaceEncoder", "TransformerEncoder", "register_encoder"]
