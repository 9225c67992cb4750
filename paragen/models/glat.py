"""GLAT, the Glancing Transformer (Qian et al., ACL 2021), as a plug-in on the shared stack.

    src ─ TransformerEncoder ─ memory ─┬─ mean-pool ─ length classifier ─→ target length
                                       │
    copy(src embeddings → T slots) ────┴─ TransformerDecoder(causal=False) ─→ all T tokens

What makes it GLAT lives in training (see `paragen.criteria.glancing`): a first, gradient-free
pass predicts the whole target; some reference tokens, as many as ratio × the number of
mistakes, are then shown ("glanced") in the decoder input and the second pass learns the rest.
Inference is one parallel pass (see `paragen.generators.nat`).

With `ctc_upsample: k` the decoder gets round(k × source length) slots (k = 2, or a fraction
such as 1.5 for fewer slots) instead of a predicted length, and is trained with CTC (blank =
the pad id, which no reference contains); glancing then uses the model's best CTC alignment
of the reference (`paragen.models.ctc`, `GlancingCTC` loss). `ctc_max_slots: N` caps the slots
at N: a summary is far shorter than its source, so k × a 512-token source would be hundreds
of slots mostly left blank; capped, a long source gets N slots (still copied uniformly from
the whole source), a short one k × its length.
"""
from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Tuple

import torch
from torch import nn

from paragen.checkpoint import load_model_weights
from paragen.models.ctc import best_alignment, lattice_states
from paragen.models.seq2seq import build_encoder_decoder
from paragen.registry import register_model


@register_model
class GLAT(nn.Module):
    supports_refinement = True  # predict_slots accepts fed-back tokens

    def __init__(self, encoder: Dict[str, Any], decoder: Dict[str, Any], d_model: int = 512,
                 share_embedding: Literal["all", "decoder", "none"] = "all",
                 decoder_input: Literal["uniform_copy", "unk"] = "uniform_copy",
                 length_prediction: Literal["offset", "absolute"] = "offset",
                 max_length_offset: int = 32, max_length: int = 256, ctc_upsample: float = 0.0,
                 ctc_max_slots: int = 0, path: Optional[str] = None, *, src_vocab_size: int, tgt_vocab_size: int,
                 pad_id: int, config_path: str = "task.model"):
        super().__init__()
        if decoder.get("causal", False):
            raise ValueError(f"{config_path}.decoder.causal: a NAT decoder must be non-causal")
        self.pad_id, self.length_prediction, self.max_length = pad_id, length_prediction, max_length
        self.max_length_offset = max_length_offset
        if ctc_upsample < 0:
            raise ValueError(f"{config_path}.ctc_upsample: must be ≥ 0 (0 = predict lengths), "
                             f"got {ctc_upsample}")
        if ctc_max_slots < 0 or (ctc_max_slots and not ctc_upsample):
            raise ValueError(f"{config_path}.ctc_max_slots: a cap (≥ 1) on the slots of a CTC "
                             f"model (ctc_upsample > 0), or 0 for none; got {ctc_max_slots} with "
                             f"ctc_upsample {ctc_upsample}")
        self.ctc_upsample, self.ctc_max_slots = ctc_upsample, ctc_max_slots
        self.encoder, self.decoder = build_encoder_decoder(
            encoder, {**decoder, "causal": False}, d_model, share_embedding, src_vocab_size,
            tgt_vocab_size, pad_id, config_path)
        positions = self.decoder.embed.positions.weight.size(0)
        most_slots = min(ctc_upsample * max_length, ctc_max_slots or float("inf"))
        if most_slots > positions:
            raise ValueError(f"{config_path}.ctc_upsample: {ctc_upsample} × max_length "
                             f"{max_length} slots exceed the decoder's max_positions {positions}"
                             f" (or cap them with ctc_max_slots)")
        classes = 2 * max_length_offset + 1 if length_prediction == "offset" else max_length + 1
        self.length_classifier = None if ctc_upsample else nn.Linear(d_model, classes)
        # The `unk` decoder input: one learned vector in every slot (positions tell them apart).
        self.unk_input = nn.Parameter(torch.randn(d_model) * d_model ** -0.5) \
            if decoder_input == "unk" else None
        if path:
            load_model_weights(self, path)

    # ------------------------------------------------------------------ lengths
    def length_logits(self, memory: torch.Tensor, memory_padding: torch.Tensor) -> torch.Tensor:
        """(B, classes) from the mean of the non-pad encoder states.

        A CTC model has one class: its only length is ctc_upsample × the source length.
        """
        if self.length_classifier is None:
            return memory.new_zeros(memory.size(0), 1)
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
        """Length classes → target lengths (a CTC model's slot counts: `NATGenerator`)."""
        lengths = classes - self.max_length_offset + src_lengths.unsqueeze(-1) \
            if self.length_prediction == "offset" else classes
        return lengths.clamp(1, self.max_length)  # at least one slot (for eos)

    # ------------------------------------------------------------------ decoder
    def initial_decoder_input(self, src: torch.Tensor, target_padding: torch.Tensor
                              ) -> torch.Tensor:
        """(B,T,D) vectors for T target slots, before any glancing.

        Uniform copy: slot j of a length-T target takes the (scaled) embedding of source token
        round(j·(S-1)/(T-1)), S the real source length; each sentence gets its own ratio.
        """
        batch, slots = target_padding.shape
        if self.unk_input is not None:
            return self.unk_input.expand(batch, slots, -1)
        src_len = src.ne(self.pad_id).sum(-1, keepdim=True).to(torch.float32)
        tgt_len = (~target_padding).sum(-1, keepdim=True).to(torch.float32)
        positions = torch.arange(slots, device=src.device, dtype=torch.float32).unsqueeze(0)
        scale = (src_len - 1).clamp_min(0) / (tgt_len - 1).clamp_min(1)
        index = (positions * scale).round().long().clamp_max(src.size(1) - 1)
        copied = src.gather(1, index)
        return self.embed_target_tokens(copied)

    def embed_target_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        embed = self.decoder.embed
        return embed.tokens(tokens) * embed.scale

    def decode(self, decoder_input: torch.Tensor, memory: torch.Tensor,
               memory_padding: torch.Tensor, target_padding: torch.Tensor) -> torch.Tensor:
        """Hidden states (B,T,D) for all slots at once (no causal mask)."""
        x = self.decoder.embed.embed_vectors(decoder_input)
        return self.decoder.forward_embedded(x, memory, memory_padding,
                                             target_padding=target_padding, return_hidden=True)

    def output_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder.output_projection(hidden)

    def token_logits(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B,T,K) logits of K given tokens per row (B,K) only: = output_logits(hidden)
        gathered at `tokens`, without the (B,T,V) product."""
        weight = self.decoder.output_projection.weight[tokens]  # (B,K,D)
        return torch.bmm(hidden.to(weight.dtype), weight.transpose(1, 2)).float()

    # ------------------------------------------------------------------ inference interface
    # What a NAT generator needs, in two coarse steps, so that an exported graph pair
    # (`paragen.exporting`) can stand in for the model.
    def encode(self, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """memory (B,S,D), memory_padding (B,S) and length logits (B,classes)."""
        memory, memory_padding = self.encoder(src)
        return memory, memory_padding, self.length_logits(memory, memory_padding)

    def predict_slots(self, src: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                      target_padding: torch.Tensor, given: Optional[torch.Tensor] = None,
                      given_mask: Optional[torch.Tensor] = None, with_scores: bool = True
                      ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Best token (B,T) of every slot and its log-probability (B,T), in one pass.

        `given` tokens (B,T), where `given_mask` is True, enter the decoder input as glanced
        tokens do in training: a refinement pass re-predicts the other slots given them.
        `with_scores=False` returns None for the scores (see `best_tokens`).
        """
        decoder_input = self.initial_decoder_input(src, target_padding)
        if given is not None:
            decoder_input = torch.where(given_mask.unsqueeze(-1), self.embed_target_tokens(given),
                                        decoder_input)
        hidden = self.decode(decoder_input, memory, memory_padding, target_padding)
        return self.best_tokens(hidden, target_padding, with_scores)

    def best_tokens(self, hidden: torch.Tensor, padding: Optional[torch.Tensor] = None,
                    with_scores: bool = True, rows_per_chunk: int = 512
                    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Argmax token (B,T) of each slot and its log-probability (B,T), or None for the
        scores with `with_scores=False`. Slots where `padding` (B,T) is True skip the output
        layer and get pad and score 0: in a 4,096-token batch of test2016, sorted by length,
        a fifth of the slots are padding.

        Eagerly, slots go through the output layer in chunks, so that each chunk's (rows × V)
        logits are still in cache when they are reduced, instead of a (B·T × V) tensor being
        written and read back. The scores cost a log_softmax and a max-with-indices over
        every row; an argmax alone is cheaper, hence the tokens-only mode for callers that
        need only the tokens (glancing's first pass, a single-pass decode); 512-row chunks
        beat 128-row ones (`benchmarks/output_layer.py` measures all three). A traced graph
        (`paragen export`) takes one dense pass, as a loop would be unrolled to the example's
        size. log_softmax + max is faster than max − logsumexp, in PyTorch and onnxruntime.
        """
        if torch.jit.is_tracing():
            logits = self.output_logits(hidden)
            if not with_scores:
                return logits.argmax(-1), None
            scores, tokens = torch.log_softmax(logits.float(), -1).max(-1)
            return tokens, scores
        real = ~padding if padding is not None else \
            torch.ones(hidden.shape[:-1], dtype=torch.bool, device=hidden.device)
        flat = hidden[real]
        tokens = torch.empty(flat.size(0), dtype=torch.long, device=flat.device)
        scores = torch.empty(flat.size(0), device=flat.device) if with_scores else None
        with torch.no_grad():  # argmax has no gradient; `out=` refuses autograd
            for start in range(0, flat.size(0), rows_per_chunk):
                rows = slice(start, start + rows_per_chunk)
                logits = self.output_logits(flat[rows])
                if scores is None:
                    torch.argmax(logits, dim=-1, out=tokens[rows])
                else:
                    torch.max(torch.log_softmax(logits.float(), dim=-1), dim=-1,
                              out=(scores[rows], tokens[rows]))
        tokens = torch.full_like(real, self.pad_id, dtype=torch.long).masked_scatter_(real, tokens)
        if scores is not None:
            scores = torch.zeros_like(real, dtype=scores.dtype).masked_scatter_(real, scores)
        return tokens, scores

    def forward(self, src: torch.Tensor, target: torch.Tensor, glance_ratio: float = 0.0
                ) -> Dict[str, torch.Tensor]:
        """Hidden states of the decoder slots, their padding, length logits and glance mask.

        The slots are the reference's tokens, or with CTC ctc_upsample × the source length
        (at most ctc_max_slots).
        With `glance_ratio` > 0 this is GLAT's training step: pass 1 (no gradient) predicts
        every slot; per sentence floor(ratio × mistakes) slots, chosen uniformly at random
        among the non-pad ones, get their reference token's embedding as input (with CTC: the
        token the best alignment puts there); pass 2 (the returned one) then predicts all
        slots, and the cross-entropy loss skips the glanced ones.
        """
        memory, memory_padding = self.encoder(src)
        if self.ctc_upsample:
            # round() as `NATGenerator.candidate_lengths` does, so a fractional upsample
            # (1.5) gives training and decoding the same slot counts
            slot_lengths = (src.ne(self.pad_id).sum(-1) * self.ctc_upsample).round().long()
            if self.ctc_max_slots:
                slot_lengths = slot_lengths.clamp_max(self.ctc_max_slots)
            slot_padding = torch.arange(int(slot_lengths.max()), device=src.device)[None, :] \
                >= slot_lengths[:, None]
        else:
            slot_padding = target.eq(self.pad_id)
        decoder_input = self.initial_decoder_input(src, slot_padding)
        glance_mask = torch.zeros_like(slot_padding)
        if glance_ratio > 0:
            with torch.no_grad():
                hidden = self.decode(decoder_input, memory.detach(), memory_padding, slot_padding)
                prediction, _ = self.best_tokens(hidden, slot_padding, with_scores=False)
                reference, feasible = target, None
                if self.ctc_upsample:
                    # Raw logits of the lattice's tokens do: a slot's softmax normaliser
                    # shifts every path alike.
                    emit = self.token_logits(hidden, lattice_states(target, self.pad_id))
                    reference, feasible = best_alignment(
                        emit, slot_lengths, target,
                        target.ne(self.pad_id).sum(-1), blank=self.pad_id)
            glance_mask = glancing_mask(prediction, reference, slot_padding, glance_ratio)
            if feasible is not None:  # a reference longer than the slots has no alignment
                glance_mask &= feasible[:, None]
            decoder_input = torch.where(glance_mask.unsqueeze(-1),
                                        self.embed_target_tokens(reference), decoder_input)
        hidden = self.decode(decoder_input, memory, memory_padding, slot_padding)
        return {"hidden": hidden, "slot_padding": slot_padding, "glance_mask": glance_mask,
                "length_logits": self.length_logits(memory, memory_padding)}

def glancing_mask(prediction: torch.Tensor, target: torch.Tensor, target_padding: torch.Tensor,
                  ratio: float) -> torch.Tensor:
    """(B,T) bool: floor(ratio × Hamming(prediction, target)) random non-pad slots per row.

    Vectorized: each slot draws a uniform key (padding gets a key above every real one); a
    slot is glanced when its rank within the row is below that row's count.
    """
    mistakes = (prediction.ne(target) & ~target_padding).sum(-1)
    count = torch.floor(mistakes.to(torch.float32) * ratio).long()
    keys = torch.rand(target.shape, device=target.device).masked_fill(target_padding, 2.0)
    ranks = keys.argsort(dim=-1).argsort(dim=-1)
    return ranks < count.unsqueeze(-1)
