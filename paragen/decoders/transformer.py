"""The Transformer decoder, used causally (AR, with a KV cache) or non-causally (NAT).

The same class serves both families: an AR model calls `forward(tokens)` with `causal=True`;
a NAT model builds its own decoder input vectors and calls `forward_embedded(vectors)` with
`causal=False`. Output logits come from a projection that may share the embedding weight. `dlcl: true`
combines the layers dynamically (paragen/modules/dlcl.py), for deep decoders.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from paragen.modules.dlcl import LayerCombination, run_layers
from paragen.modules.layers import (LayerCache, TokenEmbedding, TransformerLayer,
                                    padding_to_attn_mask)
from paragen.registry import register_decoder


@register_decoder
class TransformerDecoder(nn.Module):
    def __init__(self, num_layers: int = 6, d_model: int = 512, num_heads: int = 8,
                 ffn_dim: int = 2048, dropout: float = 0.1, attention_dropout: float = 0.0,
                 activation_dropout: float = 0.0,
                 activation: str = "relu", pre_norm: bool = False, learned_positions: bool = False,
                 max_positions: int = 1024, causal: bool = True, dlcl: bool = False, *,
                 vocab_size: int, pad_id: int,
                 embed: Optional[nn.Embedding] = None, share_output_embedding: bool = True):
        super().__init__()
        self.d_model, self.pad_id, self.causal = d_model, pad_id, causal
        self.max_positions = max_positions  # a search clamps output lengths to fit
        self.embed = TokenEmbedding(vocab_size, d_model, pad_id, max_positions, learned_positions,
                                    dropout, embed)
        self.layers = nn.ModuleList(
            TransformerLayer(d_model, num_heads, ffn_dim, dropout, attention_dropout,
                             activation_dropout, activation, pre_norm, cross_attention=True)
            for _ in range(num_layers))
        self.dlcl = LayerCombination(num_layers, d_model) if dlcl else None
        self.final_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.output_projection = nn.Linear(d_model, vocab_size, bias=False)
        if share_output_embedding:
            self.output_projection.weight = self.embed.tokens.weight
        else:
            nn.init.normal_(self.output_projection.weight, std=d_model ** -0.5)

    # Rows of a CPU inference product that a weight stored input-major (D,V) serves faster:
    # with 4-128 rows (a verification block, one sentence's NAT slots) the (V,D) layout ran
    # 1.16-2.0× slower on Xeon-AMX at one thread; with 1-2 rows or 256 it did not
    # (`benchmarks/output_layer.py --few-rows`, `output_layer_layout.json`).
    FEW_ROWS = (4, 128)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of hidden states x (..., D): `output_projection(x)`, through an input-major
        copy of the weight (made once, remade if the weight changes) for a few rows of an
        fp32 CPU inference pass."""
        layer = self.output_projection
        rows = x.numel() // max(x.size(-1), 1)
        if (type(layer) is not nn.Linear or not torch.is_inference_mode_enabled()
                or x.device.type != "cpu" or x.dtype != layer.weight.dtype
                or torch.is_autocast_enabled("cpu") or torch.jit.is_tracing()
                or not self.FEW_ROWS[0] <= rows <= self.FEW_ROWS[1]):
            return layer(x)
        weight = layer.weight
        key = (weight.data_ptr(), weight._version, weight.dtype)
        if getattr(self, "_input_major", (None,))[0] != key:
            self._input_major = (key, weight.detach().t().contiguous())
        logits = torch.matmul(x, self._input_major[1])
        return logits if layer.bias is None else logits + layer.bias

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                cache: Optional[List[LayerCache]] = None, return_hidden: bool = False
                ) -> torch.Tensor:
        """Logits (B,T,V) for target-side `tokens` (B,T).

        With `cache` (one dict per layer, see `init_cache`) only the new positions are given:
        `tokens` holds the last step, positions continue from the cached length.
        """
        offset = cache[0]["k"].size(2) if cache is not None and "k" in cache[0] else 0
        x = self.embed(tokens, offset)
        return self.forward_embedded(x, memory, memory_padding, cache=cache,
                                     return_hidden=return_hidden)

    def forward_embedded(self, x: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                         target_padding: Optional[torch.Tensor] = None,
                         cache: Optional[List[LayerCache]] = None,
                         return_hidden: bool = False, single_step: bool = False) -> torch.Tensor:
        """Decode already-embedded inputs (B,T,D). NAT models pass `target_padding` (B,T).

        `single_step` tells a traced graph (`paragen export`) that x is one cached step, which
        it cannot read from a symbolic shape.
        """
        memory_mask = padding_to_attn_mask(memory_padding)
        self_mask = None if target_padding is None else padding_to_attn_mask(target_padding)
        # One query step against a cache needs no causal mask: it may see every cached key.
        single_step = single_step or (cache is not None and x.size(1) == 1)
        is_causal = self.causal and not single_step
        x = run_layers(x, len(self.layers), lambda i, h: self.layers[i](
            h, self_mask=self_mask, is_causal=is_causal, memory=memory, memory_mask=memory_mask,
            cache=None if cache is None else cache[i]), self.dlcl)
        x = self.final_norm(x)
        return x if return_hidden else self.project(x)

    def forward_block(self, tokens: torch.Tensor, positions: torch.Tensor,
                      memory: Optional[torch.Tensor], memory_padding: torch.Tensor,
                      cache: List[LayerCache], extent: Optional[int] = None) -> torch.Tensor:
        """Logits (B,W,V) of W new tokens per row placed at that row's own positions (B,W),
        consecutive within a row, over a cache whose rows hold different numbers of entries.

        Speculative verification runs one pass over [last accepted token, draft block] for
        sentences that have accepted different lengths. A query at position p sees the cache
        entries at positions ≤ p, so whatever a row left past its accepted length (rejected
        draft tokens) is ignored and overwritten by its next block. Such a cache is written
        in place (`write_at_positions`): use it with this method only, not with `forward`.
        Positions past the position table (padding of a short row's block) reuse the table's
        last vector; their outputs mean nothing and the caller ignores them.
        `extent`: the cache positions attended over (default: up to the furthest position);
        an exported graph passes its fixed-size buffer's length, a shape, not a value.
        """
        if extent is None:
            extent = int(positions[:, -1].max()) + 1
        keys = torch.arange(extent, device=positions.device)
        self_mask = keys[None, None, None, :] <= positions[:, None, :, None]
        table = self.embed.positions.weight.size(0)
        x = self.embed.embed_at(tokens, positions.clamp(max=table - 1))
        memory_mask = padding_to_attn_mask(memory_padding)
        x = run_layers(x, len(self.layers), lambda i, h: self.layers[i](
            h, self_mask=self_mask, memory=memory, memory_mask=memory_mask, cache=cache[i],
            cache_positions=positions), self.dlcl)
        return self.project(self.final_norm(x))

    def init_cache(self) -> List[LayerCache]:
        return [{} for _ in self.layers]

    @staticmethod
    def reorder_cache(cache: List[LayerCache], order: torch.Tensor) -> None:
        """Select rows of the self-attention cache (beam search reorders hypotheses)."""
        for layer_cache in cache:
            for key in ("k", "v"):
                if key in layer_cache:
                    layer_cache[key] = layer_cache[key].index_select(0, order)
