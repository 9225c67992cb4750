"""Sentence classifier: the shared Transformer encoder, a pooled vector, a small head.

    [bos] tokens [eos] (tokens [eos]) ─ encoder ─ pool ─ dropout · dense · tanh · dropout · out
                                                   └ `cls`: the first (bos) position
                                                     `mean`: the mean over real tokens
                                                     `max`: the maximum over real tokens

The head is fairseq's RoBERTa classification head. `num_outputs` is the number of labels, or 1
for regression. With `num_segments` (the task passes 2 for sentence pairs encoded as
segments) a learned segment embedding is added to the token embeddings, as in BERT; an
encoder with token-type embeddings of its own (`TokenTypeEncoder`, a pretrained BERT) gets the
segment ids instead. `d_model: auto` (the default) takes the width from the encoder (its own
`d_model` key, or a pretrained network's hidden size); a number is checked against it.
`token_dropout` is word dropout (Iyyer et al. 2015): in training each token but the first
becomes unk with that probability, which a small encoder trained from scratch on a small
corpus needs more than dropout inside the layers.
"""
from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Union

import torch
from torch import nn

import paragen.encoders  # noqa: F401  (registers the encoders a config names)
from paragen.checkpoint import load_model_weights
from paragen.interfaces import TokenTypeEncoder
from paragen.modules.layers import Dropout
from paragen.registry import build, register_model


@register_model
class SequenceClassifier(nn.Module):
    def __init__(self, encoder: Dict[str, Any], d_model: Union[int, Literal["auto"]] = "auto",
                 pooling: Literal["cls", "mean", "max"] = "cls", pooler_dropout: float = 0.1,
                 token_dropout: float = 0.0, path: Optional[str] = None, *, vocab_size: int,
                 num_outputs: int, pad_id: int, unk_id: Optional[int] = None,
                 num_segments: int = 0, config_path: str = "task.model"):
        super().__init__()
        if d_model != "auto" and encoder.get("d_model", d_model) != d_model:
            raise ValueError(f"{config_path}.encoder.d_model: {encoder['d_model']} differs from "
                             f"{config_path}.d_model {d_model}")
        if not 0.0 <= token_dropout < 1.0 or (token_dropout and unk_id is None):
            raise ValueError(f"{config_path}.token_dropout: must be in [0, 1) and needs a "
                             f"tokenizer with an unk id, got {token_dropout}")
        self.pooling, self.pad_id, self.unk_id = pooling, pad_id, unk_id
        self.token_dropout = token_dropout
        self.encoder = build("encoder", encoder if d_model == "auto" else
                             {**encoder, "d_model": d_model}, f"{config_path}.encoder",
                             vocab_size=vocab_size, pad_id=pad_id)
        if d_model == "auto":
            d_model = getattr(self.encoder, "d_model", None)
            if not isinstance(d_model, int):
                raise ValueError(f"{config_path}.d_model: {type(self.encoder).__name__} does not "
                                 f"say its width (a d_model attribute); give d_model")
        self.segments_as_token_types = (bool(num_segments)
                                        and isinstance(self.encoder, TokenTypeEncoder)
                                        and self.encoder.num_token_types >= num_segments)
        self.segments = nn.Embedding(num_segments, d_model) \
            if num_segments and not self.segments_as_token_types else None
        if self.segments is not None:
            nn.init.normal_(self.segments.weight, std=d_model ** -0.5)
        self.head = nn.Sequential(Dropout(pooler_dropout), nn.Linear(d_model, d_model), nn.Tanh(),
                                  Dropout(pooler_dropout), nn.Linear(d_model, num_outputs))
        if path:
            load_model_weights(self, path)

    def forward(self, src: torch.Tensor, segments: Optional[torch.Tensor] = None
                ) -> Dict[str, torch.Tensor]:
        """(B,S) ids [and (B,S) segment ids] → {"logits": (B, num_outputs)}."""
        if self.training and self.token_dropout:
            drop = torch.rand(src.shape, device=src.device) < self.token_dropout
            drop[:, 0] = False  # the pooled (bos) position stays
            src = src.masked_fill(drop & src.ne(self.pad_id), self.unk_id)
        if self.segments_as_token_types:
            hidden, padding = self.encoder(src, token_types=segments)
        else:
            added = self.segments(segments) if self.segments is not None else None
            hidden, padding = self.encoder(src, added)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(padding.unsqueeze(-1), -torch.inf).amax(1)
        else:
            keep = (~padding).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return {"logits": self.head(pooled)}
