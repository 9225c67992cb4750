"""Transformer building blocks shared by every encoder and decoder (AR and NAT).

Attention goes through `torch.nn.functional.scaled_dot_product_attention`, which picks the
fastest kernel for the device (flash / memory-efficient on GPU, a fused C++ path on CPU).
"""
from __future__ import annotations

import contextlib
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# A layer's incremental-decoding state: {"k": (B,H,T,Dh), "v": ...} for self-attention
# (grows by one step per call) and {"mem_k", "mem_v"} for cross-attention (computed once).
LayerCache = Dict[str, torch.Tensor]


class MultiheadAttention(nn.Module):
    """Multi-head attention with a fused QKV projection and an optional key/value cache."""

    # While `paragen export` writes ONNX graphs it sets this to a function that writes the
    # attention as one fused node where it can, and returns None where it cannot
    # (`paragen.exporting.fused_attention`); None otherwise.
    export_attention = None

    def __init__(self, d_model: int, num_heads: int, dropout: float, self_attention: bool):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim, self.dropout = num_heads, d_model // num_heads, dropout
        self.self_attention = self_attention
        if self_attention:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        else:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return split_heads(x, self.num_heads)

    def forward(self, x: torch.Tensor, memory: Optional[torch.Tensor] = None,
                attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False,
                cache: Optional[LayerCache] = None,
                cache_positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`attn_mask` is boolean, broadcastable to (B,H,Tq,Tk), True where attention is allowed.

        `cache_positions` (B,Tq): the cache holds rows of different lengths (see
        `write_at_positions`); `attn_mask` (B,1,Tq,Tk) then says which entries each query sees.
        """
        if self.export_attention is not None:
            fused = self.export_attention(x, memory, attn_mask, is_causal, cache,
                                          cache_positions)
            if fused is not None:
                return fused
        if self.self_attention:
            q, k, v = self.qkv_proj(x).chunk(3, dim=-1)
            q, k, v = self._heads(q), self._heads(k), self._heads(v)
            if cache is not None:
                if cache_positions is not None:
                    k, v = write_at_positions(cache, k, v, cache_positions, attn_mask.size(-1))
                else:
                    if "k" in cache:
                        k = torch.cat([cache["k"], k], dim=2)
                        v = torch.cat([cache["v"], v], dim=2)
                    cache["k"], cache["v"] = k, v
        else:
            q = self._heads(self.q_proj(x))
            if cache is not None and "mem_k" in cache:
                k, v = cache["mem_k"], cache["mem_v"]
            else:
                k, v = (self._heads(t) for t in self.kv_proj(memory).chunk(2, dim=-1))
                if cache is not None:  # contiguous once, not copied again at every step
                    k, v = k.contiguous(), v.contiguous()
                    cache["mem_k"], cache["mem_v"] = k, v
        if q.size(2) == 1 and q.device.type == "cpu" and not self.training:
            out = single_query_attention(q, k, v, attn_mask)
        else:
            # CPU SDPA's backward is several times slower in bf16 than in fp32 (torch 2.13:
            # it took a third of a bf16 training step); attention is a few % of the FLOPs,
            # so it trains in fp32, autocast off (it would cast the inputs back to bf16).
            in_fp32 = q.device.type == "cpu" and q.dtype == torch.bfloat16 and self.training
            if in_fp32:
                q, k, v = q.float(), k.float(), v.float()
            with torch.autocast("cpu", enabled=False) if in_fp32 else contextlib.nullcontext():
                out = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=attn_mask, is_causal=is_causal and attn_mask is None,
                    dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(x.size(0), x.size(1), -1)
        return self.out_proj(out)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B,T,D) → (B,H,T,Dh)."""
    return x.view(x.size(0), x.size(1), num_heads, x.size(2) // num_heads).transpose(1, 2)


def write_at_positions(cache: LayerCache, k: torch.Tensor, v: torch.Tensor,
                       positions: torch.Tensor, extent: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Store new keys/values (B,H,W,Dh) at each row's own positions (B,W) of fixed buffers
    and return the buffers' first `extent` positions.

    Speculative verification feeds rows that have accepted different numbers of tokens: the
    cache cannot grow by concatenation, so every row writes its block where its sentence is.
    Entries past a row's accepted length (rejected draft tokens) stay in the buffer; the
    caller's mask hides them and the row's next block overwrites them, so rolling them back
    costs nothing and the accepted prefix is never recomputed. Buffers grow (doubling) when a
    block reaches past them.
    """
    if "k" not in cache or cache["k"].size(2) < extent:
        size = max(extent, 2 * cache["k"].size(2)) if "k" in cache else extent
        for key, new in (("k", k), ("v", v)):
            buffer = new.new_zeros(new.size(0), new.size(1), size, new.size(3))
            if key in cache:
                buffer[:, :, :cache[key].size(2)] = cache[key]
            cache[key] = buffer
    index = positions[:, None, :, None].expand_as(k)
    cache["k"].scatter_(2, index, k)
    cache["v"].scatter_(2, index, v)
    return cache["k"][:, :, :extent], cache["v"][:, :, :extent]


def single_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Attention of one query per row (a cached decoding step) as two batched products.

    SDPA's fused CPU kernel is tiled for long query blocks; with a single query it is slower
    than two plain products on decoding shapes (many rows, few heads, tens of keys; see
    `benchmarks/single_query_attention.py`).
    """
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(q.size(-1) ** -0.5)
    if attn_mask is not None:
        scores.masked_fill_(~attn_mask, -torch.inf)
    return torch.matmul(torch.softmax(scores, dim=-1), v)


class Dropout(nn.Module):
    """Inverted dropout whose mask comes from raw random bits instead of `bernoulli_`.

    On CPU, `torch.nn.Dropout` spends most of its time drawing one float per element;
    filling int64 words with random bits is an order of magnitude cheaper for the same mask.
    Each element reads 15 bits, so the drop probability is `p` rounded to a multiple of
    1/32768. Identity in eval mode or with p = 0.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * keep_mask(x.shape, self.p, x.device).to(x.dtype).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Bool mask, False with probability p (to 1/32768), from 15 random bits per element."""
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_()
    bits = words.view(torch.int16)[:count].view(shape)  # random_() leaves bit 63 zero:
    return (bits & 0x7FFF) >= round(p * 32768)  # use the low 15 bits of every int16


class FeedForward(nn.Module):
    """Two linear maps with an activation between; `dropout` acts on the (wide) hidden layer.

    That inner dropout defaults to 0 (as fairseq's `activation_dropout`): on CPU, sampling a
    mask over the ffn_dim-wide activations costs more than the regularisation is worth.
    """

    def __init__(self, d_model: int, ffn_dim: int, dropout: float, activation: str):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, ffn_dim), nn.Linear(ffn_dim, d_model)
        self.activation = {"relu": F.relu, "gelu": F.gelu}[activation]
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.activation(self.fc1(x))))


class Residual(nn.Module):
    """`x + dropout(f(norm(x)))` (pre-norm) or `norm(x + dropout(f(x)))` (post-norm)."""

    def __init__(self, d_model: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm, self.dropout, self.pre_norm = nn.LayerNorm(d_model), Dropout(dropout), pre_norm

    def forward(self, x: torch.Tensor, sublayer) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class TransformerLayer(nn.Module):
    """Self-attention (+ cross-attention when `cross_attention`) + feed-forward."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float,
                 attention_dropout: float, activation_dropout: float, activation: str,
                 pre_norm: bool, cross_attention: bool):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, num_heads, attention_dropout, True)
        self.self_res = Residual(d_model, dropout, pre_norm)
        self.cross_attn = MultiheadAttention(d_model, num_heads, attention_dropout, False) \
            if cross_attention else None
        self.cross_res = Residual(d_model, dropout, pre_norm) if cross_attention else None
        self.ffn = FeedForward(d_model, ffn_dim, activation_dropout, activation)
        self.ffn_res = Residual(d_model, dropout, pre_norm)

    def forward(self, x: torch.Tensor, self_mask: Optional[torch.Tensor] = None,
                is_causal: bool = False, memory: Optional[torch.Tensor] = None,
                memory_mask: Optional[torch.Tensor] = None,
                cache: Optional[LayerCache] = None,
                cache_positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.self_res(x, lambda h: self.self_attn(h, attn_mask=self_mask, is_causal=is_causal,
                                                      cache=cache,
                                                      cache_positions=cache_positions))
        if self.cross_attn is not None:
            x = self.cross_res(x, lambda h: self.cross_attn(h, memory, attn_mask=memory_mask,
                                                            cache=cache))
        return self.ffn_res(x, self.ffn)


class PositionalEmbedding(nn.Module):
    """Sinusoidal (fixed) or learned absolute positions, for positions 0..max_positions-1."""

    def __init__(self, d_model: int, max_positions: int, learned: bool):
        super().__init__()
        self.learned = learned
        if learned:
            self.weight = nn.Parameter(torch.randn(max_positions, d_model) * d_model ** -0.5)
        else:
            self.register_buffer("weight", sinusoidal_table(max_positions, d_model), persistent=False)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        if offset + length > self.weight.size(0):
            raise ValueError(f"sequence of {offset + length} positions exceeds max_positions "
                             f"{self.weight.size(0)}")
        return self.weight[offset:offset + length]


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = torch.arange(num_positions, dtype=torch.float)[:, None] * freq[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    return table


class TokenEmbedding(nn.Module):
    """Token embedding × sqrt(d) + positions, with dropout; the weight may be tied to an output."""

    def __init__(self, vocab_size: int, d_model: int, pad_id: int, max_positions: int,
                 learned_positions: bool, dropout: float, embed: Optional[nn.Embedding] = None):
        super().__init__()
        self.tokens = embed if embed is not None else make_embedding(vocab_size, d_model, pad_id)
        self.scale = math.sqrt(d_model)
        self.positions = PositionalEmbedding(d_model, max_positions, learned_positions)
        self.dropout = Dropout(dropout)

    def forward(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return self.embed_vectors(self.tokens(tokens) * self.scale, offset)

    def embed_at(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Tokens (B,W) at their own positions (B,W), each below max_positions: rows of one
        batch at different lengths (speculative verification)."""
        return self.dropout(self.tokens(tokens) * self.scale + self.positions.weight[positions])

    def embed_vectors(self, vectors: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Add positions to already-embedded (scaled) vectors; NAT decoders feed these directly."""
        return self.dropout(vectors + self.positions(vectors.size(1), offset))


def make_embedding(vocab_size: int, d_model: int, pad_id: int) -> nn.Embedding:
    embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
    nn.init.normal_(embedding.weight, mean=0.0, std=d_model ** -0.5)
    with torch.no_grad():
        embedding.weight[pad_id].zero_()
    return embedding


def padding_to_attn_mask(padding_mask: torch.Tensor) -> torch.Tensor:
    """(B,T) True-at-padding → (B,1,1,T) True-where-attention-is-allowed, for SDPA."""
    return (~padding_mask)[:, None, None, :]
