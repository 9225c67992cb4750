"""Attention written as ONNX Runtime's fused `com.microsoft.MultiHeadAttention` operator.

The standard-ONNX form of `scaled_dot_product_attention` is a chain of about fifteen nodes per
attention (head reshapes and transposes, two MatMuls, the scale, the mask's Where/IsNaN, the
softmax) plus a Slice per fused QKV projection. On CPU, at the small widths of NAT models, those
nodes cost more than the arithmetic they wrap: in GLAT + CTC's int8 decoder they took about a
quarter of the time. ONNX Runtime's contrib operator does the whole attention in one kernel,
and its CPU version takes separate query, key and value (B,T,D) tensors with a (B,Tk) key
padding mask, which is exactly what encoder self-attention, NAT decoder self-attention and every
cross-attention without a cache need. Cached (AR step, speculative block) and causal attention
keep the standard form.

The fused form is ONNX Runtime's: an export with it runs on ONNX Runtime (what `ExportedModel`
uses) but not on other ONNX engines; `paragen export --portable` writes standard ONNX only.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from paragen.modules.layers import MultiheadAttention

CONTRIB_DOMAIN = "com.microsoft"


class _MultiHeadAttention(torch.autograd.Function):
    """Traced by its `forward` (the usual attention, so shapes and values are right while the
    exporter runs the model) and written by its `symbolic` as one contrib node."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor,
                num_heads: int) -> torch.Tensor:
        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(x.size(0), x.size(1), num_heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v),
                                             attn_mask=keep.bool()[:, None, None, :])
        return out.transpose(1, 2).reshape(q.shape)

    @staticmethod
    def symbolic(g, q, k, v, keep, num_heads: int):
        from torch.onnx._internal.torchscript_exporter.symbolic_helper import \
            _optional_input_placeholder_tensor

        no_bias = _optional_input_placeholder_tensor(g)
        out = g.op(f"{CONTRIB_DOMAIN}::MultiHeadAttention", q, k, v, no_bias, keep,
                   num_heads_i=num_heads)
        out.setType(q.type())
        return out


def _split_linear(layer: torch.nn.Linear, parts: int, x: torch.Tensor):
    """A fused projection as `parts` products: ONNX Runtime then quantizes `x` once and
    multiplies it by each slice of the weight, instead of slicing one wide output (a copy)."""
    return [F.linear(x, weight, bias)
            for weight, bias in zip(layer.weight.chunk(parts), layer.bias.chunk(parts))]


def fused_attention(attention: MultiheadAttention, x: torch.Tensor,
                    memory: Optional[torch.Tensor], attn_mask: torch.Tensor) -> torch.Tensor:
    """`MultiheadAttention.forward` for an uncached, key-padding-masked attention."""
    if attention.self_attention:
        q, k, v = _split_linear(attention.qkv_proj, 3, x)
    else:
        q = attention.q_proj(x)
        k, v = _split_linear(attention.kv_proj, 2, memory)
    keep = attn_mask.reshape(attn_mask.size(0), attn_mask.size(-1)).to(torch.int32)
    return attention.out_proj(_MultiHeadAttention.apply(q, k, v, keep, attention.num_heads))


@contextlib.contextmanager
def fusing_attention(enabled: bool = True) -> Iterator[None]:
    """Within it, every `MultiheadAttention` that can be fused traces as the contrib node."""
    previous = MultiheadAttention.export_attention
    MultiheadAttention.export_attention = fused_attention if enabled else None
    try:
        yield
    finally:
        MultiheadAttention.export_attention = previous
