"""Decoders: target-side stacks over encoder memory. Registered with `@register_decoder`."""
from paragen.decoders.transformer import TransformerDecoder

__all__ = ["TransformerDecoder"]
