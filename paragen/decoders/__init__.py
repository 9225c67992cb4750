"""Decoders: target-side stacks over encoder memory. Registered with `@register_decoder`."""
from paragen.decoders.transformer import TransformerDecoder
from paragen.registry import register_decoder

__all__ = ["TransformerDecoder", "register_decoder"]
