"""GLAT, the Glancing Transformer (Qian et al., ACL 2021): a NAT model that predicts the length.

    src ─ encoder ─ memory ─┬─ mean-pool ─ length classifier ─→ target length T
                            │
    copy(src → T slots) ────┴─ decoder(causal=False) ─→ all T tokens

One slot per target token, so a slot's reference is the target token at its position, and
glancing (`paragen.models.nat.glancing`) needs no alignment search. Trained with
`GlancingCrossEntropy`; with the glancing ratio at 0 it is the vanilla NAT of Gu et al.
(2018) (`examples/multi30k/vanilla_nat.yaml`). Decoded by `NATGenerator`: one parallel pass,
or several length candidates (NPD), optionally refined.
"""
from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Tuple

import torch
from torch import nn

from paragen.checkpoint import load_model_weights
from paragen.models.nat.base import NATBase
from paragen.registry import register_model


@register_model
class GLAT(NATBase):
    def __init__(self, encoder: Dict[str, Any], decoder: Dict[str, Any], d_model: int = 512,
                 share_embedding: Literal["all", "decoder", "none"] = "all",
                 decoder_input: Literal["uniform_copy", "unk"] = "uniform_copy",
                 length_prediction: Literal["offset", "absolute"] = "offset",
                 max_length_offset: int = 32, max_length: int = 256, path: Optional[str] = None,
                 *, src_vocab_size: int, tgt_vocab_size: int, pad_id: int,
                 config_path: str = "task.model"):
        super().__init__(encoder, decoder, d_model, share_embedding, decoder_input, max_length,
                         src_vocab_size, tgt_vocab_size, pad_id, config_path)
        self.length_prediction, self.max_length_offset = length_prediction, max_length_offset
        classes = 2 * max_length_offset + 1 if length_prediction == "offset" else max_length + 1
        self.length_classifier = nn.Linear(d_model, classes)
        if path:
            load_model_weights(self, path)

    def align(self, hidden: torch.Tensor, slot_padding: torch.Tensor, target: torch.Tensor
              ) -> Tuple[torch.Tensor, torch.Tensor]:
        return target, ~slot_padding

    def length_logits(self, memory: torch.Tensor, memory_padding: torch.Tensor) -> torch.Tensor:
        """(B, classes) from the mean of the non-pad encoder states."""
        keep = (~memory_padding).unsqueeze(-1).to(memory.dtype)
        pooled = (memory * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return self.length_classifier(pooled)

    def length_to_class(self, target_lengths: torch.Tensor, src_lengths: torch.Tensor
                        ) -> torch.Tensor:
        if self.length_prediction == "offset":
            offset = (target_lengths - src_lengths).clamp(-self.max_length_offset,
                                                          self.max_length_offset)
            return offset + self.max_length_offset
        return target_lengths.clamp(0, self.max_length)

    def class_to_length(self, classes: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """Length classes → target lengths (`NATGenerator` decodes these)."""
        lengths = classes - self.max_length_offset + src_lengths.unsqueeze(-1) \
            if self.length_prediction == "offset" else classes
        return lengths.clamp(1, self.max_length)  # at least one slot (for eos)
