"""Span extractor for extractive QA: the shared Transformer encoder and a start/end head.

    [bos] question [eos] context-window [eos] ─ encoder ─ linear ─┬ start logits (B,S)
                    (+ segment embeddings 0 | 1)                  └ end logits   (B,S)

The encoder is built exactly as `SequenceClassifier` builds it and its parameters are named
`encoder.*`, so the encoder of a pre-trained checkpoint (a masked language model, a
classifier) loads into it: by name and shape with `task.trainer.init_from`, or with `path`,
which requires every encoder parameter and loads the rest where names and shapes match.
Padding positions get the lowest logit, so no loss or search ever picks them.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn

import paragen.encoders  # noqa: F401  (registers the encoders a config names)
from paragen.checkpoint import assign_weights, load_checkpoint
from paragen.errors import DataError
from paragen.modules.layers import Dropout
from paragen.registry import build, register_model


@register_model
class SpanExtractor(nn.Module):
    """`segments: true` adds a learned question/context segment embedding (BERT); without
    it the eos between question and context is the only boundary marker (RoBERTa)."""

    def __init__(self, encoder: Dict[str, Any], d_model: int = 512, segments: bool = True,
                 head_dropout: float = 0.0, path: Optional[str] = None, *, vocab_size: int,
                 pad_id: int):
        super().__init__()
        if encoder.get("d_model", d_model) != d_model:
            raise ValueError(f"encoder.d_model: {encoder['d_model']} differs from d_model "
                             f"{d_model}")
        self.pad_id = pad_id
        self.encoder = build("encoder", {**encoder, "d_model": d_model}, "task.model.encoder",
                             vocab_size=vocab_size, pad_id=pad_id)
        self.segments = nn.Embedding(2, d_model) if segments else None
        if self.segments is not None:
            nn.init.normal_(self.segments.weight, std=d_model ** -0.5)
        self.dropout = Dropout(head_dropout)
        self.head = nn.Linear(d_model, 2)
        if path:
            self.load_pretrained(path)

    def forward(self, src: torch.Tensor, segments: Optional[torch.Tensor] = None
                ) -> Dict[str, torch.Tensor]:
        """(B,S) ids [and (B,S) segment ids] → {"start_logits", "end_logits"}: (B,S) each."""
        added = None
        if self.segments is not None and segments is not None:
            added = self.segments(segments)
        hidden, padding = self.encoder(src, added)
        logits = self.head(self.dropout(hidden))
        logits = logits.masked_fill(padding.unsqueeze(-1), torch.finfo(logits.dtype).min)
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}

    def load_pretrained(self, path: str) -> None:
        """Every `encoder.*` weight of checkpoint `path` (all must be there, shapes equal);
        the segment embedding and head too where the checkpoint has them with equal shapes
        (a span extractor's own checkpoint), else they keep their fresh initialisation."""
        state = {k.removeprefix("module."): v for k, v in load_checkpoint(path)["model"].items()}
        encoder = {k.removeprefix("encoder."): v for k, v in state.items()
                   if k.startswith("encoder.")}
        if not encoder:
            raise DataError(f"{path}: no encoder.* parameters in the checkpoint (holds "
                            f"{', '.join(sorted(state)[:5])} ...)")
        assign_weights(self.encoder, encoder, f"{path} (its encoder)")
        own = self.state_dict()
        rest = {k: v for k, v in state.items() if not k.startswith("encoder.") and k in own
                and own[k].shape == v.shape}
        self.load_state_dict(rest, strict=False)
