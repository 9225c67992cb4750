"""Masked language model: the shared Transformer encoder and BERT's LM head.

    [bos] tokens with masks [eos] ─ encoder ─ gather masked positions ─ dense · gelu · norm
                                                                       · embeddingᵀ + bias

The encoder is built exactly as `SequenceClassifier` builds it (`encoder.*` parameter names,
`d_model` given once), so a classifier started with `task.trainer.init_from` on this model's
checkpoint gets the whole pre-trained encoder, token embeddings included; only the head stays
behind. The output projection is the encoder's token embedding (BERT, RoBERTa), which gives
rare tokens' embeddings a gradient at every masked position. Logits are computed only at the
masked positions: about 15% of the tokens, against a (tokens × vocabulary) matrix otherwise.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

import paragen.encoders  # noqa: F401  (registers the encoders a config names)
from paragen.checkpoint import load_model_weights
from paragen.registry import build, register_model


class LMHead(nn.Module):
    """dense · gelu · layer norm, then the (tied) output embedding and a bias per token."""

    def __init__(self, d_model: int, vocab_size: int):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor, output_embedding: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(F.gelu(self.dense(hidden))), output_embedding, self.bias)


@register_model
class MaskedLM(nn.Module):
    def __init__(self, encoder: Dict[str, Any], d_model: int = 512, path: Optional[str] = None,
                 *, vocab_size: int, pad_id: int, config_path: str = "task.model"):
        super().__init__()
        if encoder.get("d_model", d_model) != d_model:
            raise ValueError(f"{config_path}.encoder.d_model: {encoder['d_model']} differs from "
                             f"{config_path}.d_model {d_model}")
        self.encoder = build("encoder", {**encoder, "d_model": d_model}, f"{config_path}.encoder",
                             vocab_size=vocab_size, pad_id=pad_id)
        self.head = LMHead(d_model, vocab_size)
        if path:
            load_model_weights(self, path)

    def forward(self, src: torch.Tensor, masked: Optional[torch.Tensor] = None
                ) -> Dict[str, torch.Tensor]:
        """(B,S) ids [and (B,S) bool masked positions] → {"logits": (N,V) at the masked
        positions, in row-major order, or (B,S,V) at every position without `masked`}."""
        hidden, _ = self.encoder(src)
        if masked is not None:
            hidden = hidden[masked]
        return {"logits": self.head(hidden, self.encoder.embed.tokens.weight)}
