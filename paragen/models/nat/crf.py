"""NAT-CRF (Sun et al., NeurIPS 2019): a length-predicting NAT with a CRF over its outputs.

    src ─ encoder ─ memory ─┬─ length classifier ─→ target length T
                            │
    copy(src → T slots) ────┴─ decoder(causal=False) ─ logits e_t(y) ─┐
                                                                      ├─ Viterbi ─→ T tokens
    low-rank transitions M(a, b) = E1[a] · E2[b] ─────────────────────┘

A plain NAT picks every token on its own, so neighbouring slots can repeat or contradict
each other ("thank thank you"). Here a sentence's score adds a learned score for each pair of
neighbours, and decoding finds the best whole sentence over each slot's `crf_beam` most
likely tokens (`paragen.modules.crf`). Trained with `CRFLoss` (CRF likelihood + token cross
entropy + length), with or without glancing; decoded by `NATGenerator`, whose single pass
is the Viterbi pass here.
"""
from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Tuple

import torch

from paragen.checkpoint import load_model_weights
from paragen.models.nat.glat import GLAT
from paragen.modules.crf import LowRankTransitions, crf_lattice, viterbi_over_lattice
from paragen.registry import register_model


@register_model
class NATCRF(GLAT):
    def __init__(self, encoder: Dict[str, Any], decoder: Dict[str, Any], d_model: int = 512,
                 share_embedding: Literal["all", "decoder", "none"] = "all",
                 decoder_input: Literal["uniform_copy", "unk"] = "uniform_copy",
                 length_prediction: Literal["offset", "absolute"] = "offset",
                 max_length_offset: int = 32, max_length: int = 256, crf_rank: int = 32,
                 crf_beam: int = 64, path: Optional[str] = None, *, src_vocab_size: int,
                 tgt_vocab_size: int, pad_id: int, config_path: str = "task.model"):
        super().__init__(encoder, decoder, d_model, share_embedding, decoder_input,
                         length_prediction, max_length_offset, max_length, None,
                         src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size,
                         pad_id=pad_id, config_path=config_path)
        if crf_rank < 1 or crf_beam < 1:
            raise ValueError(f"{config_path}: crf_rank and crf_beam must be ≥ 1, got "
                             f"{crf_rank} and {crf_beam}")
        self.crf_beam = crf_beam
        self.transitions = LowRankTransitions(tgt_vocab_size, crf_rank)
        if path:
            load_model_weights(self, path)

    def predict_lattice(self, src: torch.Tensor, memory: torch.Tensor,
                        memory_padding: torch.Tensor, target_padding: torch.Tensor,
                        given: Optional[torch.Tensor] = None,
                        given_mask: Optional[torch.Tensor] = None, with_scores: bool = True
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                   Optional[torch.Tensor]]:
        """The slots' beam lattice (`crf_lattice`): candidates (B,T,k), their emissions
        (B,T,k), the moves between neighbours (B,T−1,k,k), and the candidates' log-probabilities
        under their slot's own distribution (B,T,k; None with `with_scores=False`). Shapes
        follow the inputs only, so an exported graph computes it and Viterbi stays in Python
        (`slots_from_lattice`)."""
        hidden = self.predict_hidden(src, memory, memory_padding, target_padding, given,
                                     given_mask)
        logits = self.output_logits(hidden).float()
        candidates, emissions, moves = crf_lattice(logits, ~target_padding, self.transitions,
                                                   self.crf_beam)
        scores = torch.log_softmax(logits, -1).gather(-1, candidates) if with_scores else None
        return candidates, emissions, moves, scores

    def predict_slots(self, src: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                      target_padding: torch.Tensor, given: Optional[torch.Tensor] = None,
                      given_mask: Optional[torch.Tensor] = None, with_scores: bool = True
                      ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The Viterbi sentence (B,T) over each slot's `crf_beam` best tokens, and each chosen
        token's log-probability under its slot's own distribution (B,T): the per-slot
        confidence that length candidates and refinement rank by."""
        lattice = self.predict_lattice(src, memory, memory_padding, target_padding, given,
                                       given_mask, with_scores)
        return slots_from_lattice(*lattice, target_padding, self.pad_id)


def slots_from_lattice(candidates: torch.Tensor, emissions: torch.Tensor, moves: torch.Tensor,
                       candidate_scores: Optional[torch.Tensor], target_padding: torch.Tensor,
                       pad_id: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The Viterbi tokens (B,T), pad past each row's length, and their candidates' scores
    (B,T), 0 at padding (None when `candidate_scores` is): shared by `NATCRF` and its export,
    whose lattice comes out of a graph."""
    chosen, _ = viterbi_over_lattice(emissions, moves, ~target_padding)
    tokens = candidates.gather(-1, chosen[..., None])[..., 0].masked_fill(target_padding, pad_id)
    if candidate_scores is None:
        return tokens, None
    scores = candidate_scores.gather(-1, chosen[..., None])[..., 0]
    return tokens, scores.masked_fill(target_padding, 0.0)
