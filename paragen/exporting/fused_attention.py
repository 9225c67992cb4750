"""Attention written as ONNX Runtime's fused `com.microsoft.MultiHeadAttention` operator.

The standard-ONNX form of `scaled_dot_product_attention` is a chain of about fifteen nodes per
attention (head reshapes and transposes, two MatMuls, the scale, the mask's Where/IsNaN, the
softmax) plus a Slice per fused QKV projection. On CPU, at the small widths of NAT models, those
nodes cost more than the arithmetic they wrap: in GLAT + CTC's int8 graphs they took about 30%
of the node time, and they made up most of the AR step graph's 621 nodes (253 fused).
ONNX Runtime's contrib operator does a whole attention in one kernel. Its CPU version takes
separate query, key and value tensors, which covers:
  - attention without a cache, masked by key padding (B,1,1,Tk): encoder self-attention, NAT
    decoder self-attention, cross-attention of a NAT decoder;
  - an AR step's self-attention: the new key/value appended to the past ones (past_key,
    past_value → present_key, present_value, each (B,H,T,Dh) as in our cache);
  - an AR step's cross-attention over the encoder's precomputed keys/values (B,H,S,Dh).
Causal attention over a whole sequence and the speculative block's scattered cache keep the
standard form.

The fused form is ONNX Runtime's: an export with it runs on ONNX Runtime (what `ExportedModel`
uses) but not on other ONNX engines; `paragen export --portable` writes standard ONNX only.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from paragen.modules.layers import LayerCache, MultiheadAttention, split_heads

CONTRIB_DOMAIN = "com.microsoft"


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int,
            keep: Optional[torch.Tensor]) -> torch.Tensor:
    """What the fused node computes: q (B,T,D); k, v as (B,Tk,D) or already (B,H,Tk,Dh)."""
    if k.dim() == 3:
        k, v = split_heads(k, num_heads), split_heads(v, num_heads)
    mask = None if keep is None else keep.bool()[:, None, None, :]
    out = F.scaled_dot_product_attention(split_heads(q, num_heads), k, v, attn_mask=mask)
    return out.transpose(1, 2).reshape(q.shape)


def _node(g, q, k, v, keep=None, past_k=None, past_v=None, *, num_heads: int, outputs: int):
    from torch.onnx._internal.torchscript_exporter.symbolic_helper import \
        _optional_input_placeholder_tensor

    def absent():
        return _optional_input_placeholder_tensor(g)

    # inputs: query, key, value, bias, key_padding_mask, attention_bias, past_key, past_value
    inputs = [q, k, v, absent(), absent() if keep is None else keep]
    if past_k is not None:
        inputs += [absent(), past_k, past_v]
    return g.op(f"{CONTRIB_DOMAIN}::MultiHeadAttention", *inputs, num_heads_i=num_heads,
                outputs=outputs)


class _KeyPaddedAttention(torch.autograd.Function):
    """Traced by its `forward` (the usual attention, so shapes and values are right while the
    exporter runs the model) and written by its `symbolic` as one contrib node."""

    @staticmethod
    def forward(ctx, q, k, v, keep, num_heads: int):
        return _attend(q, k, v, num_heads, keep)

    @staticmethod
    def symbolic(g, q, k, v, keep, num_heads: int):
        out = _node(g, q, k, v, keep, num_heads=num_heads, outputs=1)
        out.setType(q.type())
        return out


class _StepSelfAttention(torch.autograd.Function):
    """One step's self-attention over the past keys/values, returning the grown ones."""

    @staticmethod
    def forward(ctx, q, k, v, past_k, past_v, num_heads: int):
        keys = torch.cat([past_k, split_heads(k, num_heads)], dim=2)
        values = torch.cat([past_v, split_heads(v, num_heads)], dim=2)
        return _attend(q, keys, values, num_heads, None), keys, values

    @staticmethod
    def symbolic(g, q, k, v, past_k, past_v, num_heads: int):
        out, keys, values = _node(g, q, k, v, None, past_k, past_v, num_heads=num_heads,
                                  outputs=3)
        out.setType(q.type())
        grown = past_k.type().with_sizes([None] * 4)  # one longer than past_k: unknown here
        keys.setType(grown)
        values.setType(grown)
        return out, keys, values


def _split_linear(layer: torch.nn.Linear, parts: int, x: torch.Tensor):
    """A fused projection as `parts` products: ONNX Runtime then quantizes `x` once and
    multiplies it by each slice of the weight, instead of slicing one wide output (a copy)."""
    return [F.linear(x, weight, bias)
            for weight, bias in zip(layer.weight.chunk(parts), layer.bias.chunk(parts))]


def _key_padding(attn_mask: torch.Tensor) -> Optional[torch.Tensor]:
    """(B,1,1,Tk) True-where-allowed → the node's (B,Tk) int32 mask; None for other shapes."""
    if attn_mask.dim() != 4 or attn_mask.shape[1:3] != (1, 1):
        return None
    return attn_mask.reshape(attn_mask.size(0), attn_mask.size(-1)).to(torch.int32)


def fused_attention(attention: MultiheadAttention, x: torch.Tensor,
                    memory: Optional[torch.Tensor], attn_mask: Optional[torch.Tensor],
                    is_causal: bool, cache: Optional[LayerCache],
                    cache_positions: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """`MultiheadAttention.forward` as one fused node, or None where the node does not fit
    (the layer then traces its standard form)."""
    heads = attention.num_heads
    if is_causal or cache_positions is not None:
        return None
    if cache is None:
        keep = None if attn_mask is None else _key_padding(attn_mask)
        if keep is None:
            return None
        if attention.self_attention:
            q, k, v = _split_linear(attention.qkv_proj, 3, x)
        else:
            q = attention.q_proj(x)
            k, v = _split_linear(attention.kv_proj, 2, memory)
        out = _KeyPaddedAttention.apply(q, k, v, keep, heads)
    elif attention.self_attention and attn_mask is None and "k" in cache:
        q, k, v = _split_linear(attention.qkv_proj, 3, x)
        out, cache["k"], cache["v"] = _StepSelfAttention.apply(q, k, v, cache["k"], cache["v"],
                                                               heads)
    elif not attention.self_attention and "mem_k" in cache and attn_mask is not None:
        keep = _key_padding(attn_mask)
        if keep is None:
            return None
        out = _KeyPaddedAttention.apply(attention.q_proj(x), cache["mem_k"], cache["mem_v"],
                                        keep, heads)
    else:
        return None
    return attention.out_proj(out)


@contextlib.contextmanager
def fusing_attention(enabled: bool = True) -> Iterator[None]:
    """Within it, every `MultiheadAttention` that can be fused traces as the contrib node."""
    previous = MultiheadAttention.export_attention
    MultiheadAttention.export_attention = fused_attention if enabled else None
    try:
        yield
    finally:
        MultiheadAttention.export_attention = previous
