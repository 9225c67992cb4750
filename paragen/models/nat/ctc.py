"""A NAT model with a CTC output (Libovický & Helcl 2018; with glancing, Gu & Kong 2021).

    src ─ encoder ─ memory ───────────────────┐
    copy(src → upsample × |src| slots) ───────┴─ decoder(causal=False) ─→ a token or blank per slot

No target length is predicted: the decoder gets round(upsample × source length) slots, each
emits a token or the blank (= the pad id, which no reference contains), and the output is
the slots with repeats merged and blanks dropped. Trained with `GlancingCTC`; glancing shows
the tokens of the model's best CTC alignment of the reference. `max_slots: N` caps the
slots at N: a summary is far shorter than its source, so upsample × a 512-token source would
be hundreds of slots mostly left blank; capped, a long source gets N slots (still copied
uniformly from the whole source), a short one upsample × its length.
"""
from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Tuple

import torch

from paragen.checkpoint import load_model_weights
from paragen.models.nat.base import NATBase
from paragen.modules.alignments import ctc_best_alignment, lattice_states
from paragen.registry import register_model


@register_model
class CTCNAT(NATBase):
    def __init__(self, encoder: Dict[str, Any], decoder: Dict[str, Any], d_model: int = 512,
                 share_embedding: Literal["all", "decoder", "none"] = "all",
                 decoder_input: Literal["uniform_copy", "unk"] = "uniform_copy",
                 upsample: float = 2.0, max_slots: int = 0, max_length: int = 256,
                 path: Optional[str] = None, *, src_vocab_size: int, tgt_vocab_size: int,
                 pad_id: int, config_path: str = "task.model"):
        super().__init__(encoder, decoder, d_model, share_embedding, decoder_input, max_length,
                         src_vocab_size, tgt_vocab_size, pad_id, config_path)
        self.use_upsampled_slots(upsample, max_slots, config_path)
        if path:
            load_model_weights(self, path)

    def align(self, hidden: torch.Tensor, slot_padding: torch.Tensor, target: torch.Tensor
              ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The best CTC path's token (or blank) per slot; none for a reference longer than
        its slots, which has no path."""
        # Raw logits of the lattice's tokens do: a slot's softmax normaliser shifts every
        # path alike.
        emit = self.token_logits(hidden, lattice_states(target, self.pad_id))
        reference, feasible = ctc_best_alignment(emit, (~slot_padding).sum(-1), target,
                                                 target.ne(self.pad_id).sum(-1), self.pad_id)
        return reference, ~slot_padding & feasible[:, None]
