"""CMLM, the conditional masked language model of Mask-Predict (Ghazvininejad et al., 2019).

    src ─ encoder ─ memory ─┬─ length classifier ─→ target length T
                            │
    T slots: [mask] or a ───┴─ decoder(causal=False) ─→ a token for every masked slot
    known target token

A `GLAT` whose slots start as one learned [mask] vector rather than a copy of the source,
trained to fill in a random share of masked reference tokens given the others: per sentence
n ~ Uniform{1..T} slots are masked, and the loss (`NATCrossEntropy`) covers those n only.
Decoding (`MaskPredictGenerator`) predicts every slot, then for a fixed number of
iterations re-masks the least confident and predicts them again given the rest.
"""
from __future__ import annotations

from typing import Any, Dict, Literal, Optional

import torch

from paragen.checkpoint import load_model_weights
from paragen.models.nat.glat import GLAT
from paragen.registry import register_model


@register_model
class CMLM(GLAT):
    def __init__(self, encoder: Dict[str, Any], decoder: Dict[str, Any], d_model: int = 512,
                 share_embedding: Literal["all", "decoder", "none"] = "all",
                 length_prediction: Literal["offset", "absolute"] = "offset",
                 max_length_offset: int = 32, max_length: int = 256, path: Optional[str] = None,
                 *, src_vocab_size: int, tgt_vocab_size: int, pad_id: int,
                 config_path: str = "task.model"):
        super().__init__(encoder, decoder, d_model, share_embedding, "unk", length_prediction,
                         max_length_offset, max_length, None, src_vocab_size=src_vocab_size,
                         tgt_vocab_size=tgt_vocab_size, pad_id=pad_id, config_path=config_path)
        if path:
            load_model_weights(self, path)

    def forward(self, src: torch.Tensor, target: torch.Tensor, glance_ratio: float = 0.0
                ) -> Dict[str, torch.Tensor]:
        """As `NATBase.forward`, with `glance_mask` marking the slots shown their reference
        token: all but n ~ Uniform{1..T} random ones (none shown in eval mode, so the
        validation loss is that of a first decoding pass)."""
        if glance_ratio > 0:
            raise ValueError("task.criterion: CMLM chooses its own shown tokens; train it with "
                             "NATCrossEntropy (no glancing)")
        memory, memory_padding = self.encoder(src)
        slot_padding = self.slot_padding(src, target)
        decoder_input = self.initial_decoder_input(src, slot_padding)
        shown = random_shown(slot_padding) if self.training else torch.zeros_like(slot_padding)
        decoder_input = torch.where(shown.unsqueeze(-1), self.embed_target_tokens(target),
                                    decoder_input)
        hidden = self.decode(decoder_input, memory, memory_padding, slot_padding)
        return {"hidden": hidden, "slot_padding": slot_padding, "glance_mask": shown,
                "length_logits": self.length_logits(memory, memory_padding)}


def random_shown(padding: torch.Tensor) -> torch.Tensor:
    """(B,T) True for the slots whose token is shown: all real slots but n ~ Uniform{1..T_b}
    random ones per row (T_b its real length). Vectorised as `glancing_mask` is: random keys,
    padding ranked last, the n lowest-ranked slots masked."""
    lengths = (~padding).sum(-1)
    masked = (torch.rand(lengths.shape, device=padding.device) * lengths).floor().long() + 1
    keys = torch.rand(padding.shape, device=padding.device).masked_fill(padding, 2.0)
    ranks = keys.argsort(dim=-1).argsort(dim=-1)
    return (ranks >= masked[:, None]) & ~padding
