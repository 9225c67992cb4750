"""The Transformer encoder (Vaswani et al. 2017), pre- or post-norm, optionally with DLCL
(`dlcl: true`, paragen/modules/dlcl.py) for deep stacks."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from paragen.modules.dlcl import LayerCombination, run_layers
from paragen.modules.layers import TokenEmbedding, TransformerLayer, padding_to_attn_mask
from paragen.registry import register_encoder


@register_encoder
class TransformerEncoder(nn.Module):
    def __init__(self, num_layers: int = 6, d_model: int = 512, num_heads: int = 8,
                 ffn_dim: int = 2048, dropout: float = 0.1, attention_dropout: float = 0.0,
                 activation_dropout: float = 0.0,
                 activation: str = "relu", pre_norm: bool = False, learned_positions: bool = False,
                 max_positions: int = 1024, dlcl: bool = False, *, vocab_size: int,
                 pad_id: int, embed: Optional[nn.Embedding] = None):
        super().__init__()
        self.d_model, self.pad_id = d_model, pad_id
        self.embed = TokenEmbedding(vocab_size, d_model, pad_id, max_positions, learned_positions,
                                    dropout, embed)
        self.layers = nn.ModuleList(
            TransformerLayer(d_model, num_heads, ffn_dim, dropout, attention_dropout,
                             activation_dropout, activation, pre_norm, cross_attention=False)
            for _ in range(num_layers))
        self.dlcl = LayerCombination(num_layers, d_model) if dlcl else None
        self.final_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()

    def forward(self, src: torch.Tensor, added: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B,S) token ids → memory (B,S,D) and its padding mask (B,S), True at padding.

        `added` (B,S,D) is summed with the scaled token embeddings before positions are added:
        how a sentence-pair classifier feeds segment embeddings without an encoder of its own.
        """
        padding = src.eq(self.pad_id)
        mask = padding_to_attn_mask(padding)
        if added is None:
            x = self.embed(src)
        else:
            x = self.embed.embed_vectors(self.embed.tokens(src) * self.embed.scale + added)
        x = run_layers(x, len(self.layers), lambda i, h: self.layers[i](h, self_mask=mask),
                       self.dlcl)
        return self.final_norm(x), padding
