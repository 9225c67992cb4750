"""The shared body of every non-autoregressive model: encoder, slot inputs, parallel decoder.

    src ─ TransformerEncoder ─ memory ──────────────┐
    slot inputs (copied source, or one learned      ├─ TransformerDecoder(causal=False) ─ hidden
      vector) for T slots, glanced tokens mixed in ─┘                         (B,T,D) for all slots

The models differ only in what the slots are and how their outputs become a sentence:
`GLAT` (and `CMLM`, `NATCRF`) predicts the target length and has one slot per target token;
`CTCNAT` and `DATransformer` get `upsample` × source length slots and learn which to use.
Each says how its slots line up with a reference (`align`): glancing (Qian et al. 2021), a
training strategy in `paragen.models.nat.glancing`, shows the reference tokens of some slots
in the decoder input through that alignment, so it works with every model here.
"""
from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Tuple

import torch
from torch import nn

from paragen.models.nat.glancing import glance
from paragen.models.seq2seq import build_encoder_decoder


class NATBase(nn.Module):
    """Encoder, decoder and output layer of a NAT model, and its training forward pass.

    Subclasses define `align` (the reference token of each slot, for glancing) and
    `length_logits`, and call `use_upsampled_slots` if their slots follow the source.
    """

    supports_refinement = True  # predict_slots accepts fed-back tokens
    upsample: float = 0.0  # > 0: upsample × source length slots, no length classifier
    max_slots: int = 0  # a cap on upsampled slots (0: none)

    def __init__(self, encoder: Dict[str, Any], decoder: Dict[str, Any], d_model: int,
                 share_embedding: Literal["all", "decoder", "none"],
                 decoder_input: Literal["uniform_copy", "unk"], max_length: int,
                 src_vocab_size: int, tgt_vocab_size: int, pad_id: int, config_path: str):
        super().__init__()
        if decoder.get("causal", False):
            raise ValueError(f"{config_path}.decoder.causal: a NAT decoder must be non-causal")
        self.pad_id, self.max_length, self.d_model = pad_id, max_length, d_model
        self.encoder, self.decoder = build_encoder_decoder(
            encoder, {**decoder, "causal": False}, d_model, share_embedding, src_vocab_size,
            tgt_vocab_size, pad_id, config_path)
        # The `unk` decoder input: one learned vector in every slot (positions tell them apart).
        self.unk_input = nn.Parameter(torch.randn(d_model) * d_model ** -0.5) \
            if decoder_input == "unk" else None

    # ------------------------------------------------------------------ what subclasses say
    def slot_padding(self, src: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B,T) True for the padding slots of a training batch: the reference's padding, or
        past upsample × source length for a model with upsampled slots."""
        if not self.upsample:
            return target.eq(self.pad_id)
        return padding_from_counts(upsampled_slot_counts(src, self.pad_id, self.upsample,
                                                         self.max_slots))

    def use_upsampled_slots(self, upsample: float, max_slots: int, config_path: str) -> None:
        """Give this model upsample × source length slots (at most `max_slots`), checked
        against the decoder's positions."""
        check_upsample(upsample, max_slots, self.max_length,
                       self.decoder.embed.positions.weight.size(0), config_path)
        self.upsample, self.max_slots = upsample, max_slots

    def align(self, hidden: torch.Tensor, slot_padding: torch.Tensor, target: torch.Tensor
              ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The reference token (B,T) each slot stands for, and (B,T) which slots have one."""
        raise NotImplementedError

    def glance_targets(self, hidden: torch.Tensor, slot_padding: torch.Tensor,
                       target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What glancing compares, from the first pass's states: each slot's predicted token
        (B,T), and its reference token and whether it has one (`align`)."""
        prediction, _ = self.best_tokens(hidden, slot_padding, with_scores=False)
        return (prediction, *self.align(hidden, slot_padding, target))

    def length_logits(self, memory: torch.Tensor, memory_padding: torch.Tensor) -> torch.Tensor:
        """(B, classes); one class for a model whose slot count follows the source."""
        return memory.new_zeros(memory.size(0), 1)

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
        return self.embed_target_tokens(src.gather(1, index))

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
        return self.decoder.project(hidden)

    def token_logits(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B,T,K) logits of K given tokens per row (B,K) only: = output_logits(hidden)
        gathered at `tokens`, without the (B,T,V) product."""
        weight = self.decoder.output_projection.weight[tokens]  # (B,K,D)
        return torch.bmm(hidden.to(weight.dtype), weight.transpose(1, 2)).float()

    def slot_token_logits(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B,T) logit of one given token per slot (B,T): `token_logits` with K = 1 per slot."""
        weight = self.decoder.output_projection.weight[tokens]  # (B,T,D)
        return (hidden.to(weight.dtype) * weight).sum(-1).float()

    # ------------------------------------------------------------------ inference interface
    # What a NAT generator needs, in two coarse steps, so that an exported graph pair
    # (`paragen.exporting`) can stand in for the model.
    def encode(self, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """memory (B,S,D), memory_padding (B,S) and length logits (B,classes)."""
        memory, memory_padding = self.encoder(src)
        return memory, memory_padding, self.length_logits(memory, memory_padding)

    def predict_hidden(self, src: torch.Tensor, memory: torch.Tensor,
                       memory_padding: torch.Tensor, target_padding: torch.Tensor,
                       given: Optional[torch.Tensor] = None,
                       given_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Decoder states (B,T,D) of every slot; `given` tokens (B,T), where `given_mask` is
        True, enter the decoder input as glanced tokens do in training."""
        decoder_input = self.initial_decoder_input(src, target_padding)
        if given is not None:
            decoder_input = torch.where(given_mask.unsqueeze(-1), self.embed_target_tokens(given),
                                        decoder_input)
        return self.decode(decoder_input, memory, memory_padding, target_padding)

    def predict_slots(self, src: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                      target_padding: torch.Tensor, given: Optional[torch.Tensor] = None,
                      given_mask: Optional[torch.Tensor] = None, with_scores: bool = True
                      ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Best token (B,T) of every slot and its log-probability (B,T), in one pass
        (`with_scores=False`: None for the scores, see `best_tokens`)."""
        hidden = self.predict_hidden(src, memory, memory_padding, target_padding, given,
                                     given_mask)
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
        (`paragen export`) takes one pass over the real slots (`_traced_best_tokens`), as a
        loop would be unrolled to the example's size. log_softmax + max is faster than
        max − logsumexp, in PyTorch and onnxruntime.
        """
        if torch.jit.is_tracing():
            return self._traced_best_tokens(hidden, padding, with_scores)
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

    def _traced_best_tokens(self, hidden: torch.Tensor, padding: Optional[torch.Tensor],
                            with_scores: bool
                            ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """`best_tokens` as an exported graph computes it: the real slots gathered (NonZero,
        Gather) through the output layer in one product, the results scattered back.

        The argmax goes in two stages, over the maxima of equal chunks of the vocabulary and
        then within the best chunk: onnxruntime's ArgMax is a scalar loop, about 3× slower
        than its ReduceMax, and took an eighth of GLAT + CTC's batched int8 decoder pass.
        Ties resolve to the first index, as in one ArgMax.
        """
        flat = hidden.reshape(-1, hidden.size(-1))
        if padding is None:
            padding = torch.zeros(hidden.shape[:-1], dtype=torch.bool, device=hidden.device)
        rows = (~padding).reshape(-1).nonzero().squeeze(-1)
        logits = self.output_logits(flat.index_select(0, rows))
        tokens = torch.full_like(padding, self.pad_id, dtype=torch.long).reshape(-1)
        if not with_scores:
            tokens = tokens.scatter(0, rows, argmax_in_chunks(logits))
            return tokens.view_as(padding), None
        best, best_tokens = torch.log_softmax(logits.float(), -1).max(-1)
        scores = torch.zeros_like(padding, dtype=best.dtype).reshape(-1).scatter(0, rows, best)
        return tokens.scatter(0, rows, best_tokens).view_as(padding), scores.view_as(padding)

    # ------------------------------------------------------------------ training
    def forward(self, src: torch.Tensor, target: torch.Tensor, glance_ratio: float = 0.0
                ) -> Dict[str, torch.Tensor]:
        """Decoder states of the slots (`hidden`), their padding, the length logits and which
        slots were shown their reference token (`glance_mask`, see `glancing.glance`)."""
        memory, memory_padding = self.encoder(src)
        slot_padding = self.slot_padding(src, target)
        decoder_input = self.initial_decoder_input(src, slot_padding)
        glance_mask = torch.zeros_like(slot_padding)
        if glance_ratio > 0:
            decoder_input, glance_mask = glance(self, decoder_input, memory, memory_padding,
                                                slot_padding, target, glance_ratio)
        hidden = self.decode(decoder_input, memory, memory_padding, slot_padding)
        return {"hidden": hidden, "slot_padding": slot_padding, "glance_mask": glance_mask,
                "length_logits": self.length_logits(memory, memory_padding)}


def argmax_in_chunks(logits: torch.Tensor, widest: int = 128) -> torch.Tensor:
    """`logits.argmax(-1)` of (N,V) logits through the maxima of chunks of V: the chunk
    width is V's largest divisor up to `widest` (V = 8,000: 100), plain argmax below 16."""
    vocab = logits.size(-1)
    width = max(d for d in range(1, widest + 1) if vocab % d == 0)
    if width < 16:
        return logits.argmax(-1)
    chunks = logits.reshape(logits.size(0), vocab // width, width)
    best_chunk = chunks.amax(-1).argmax(-1)
    within = chunks.gather(1, best_chunk[:, None, None].expand(-1, 1, width)).squeeze(1)
    return best_chunk * width + within.argmax(-1)


def upsampled_slot_counts(src: torch.Tensor, pad_id: int, upsample: float, max_slots: int
                          ) -> torch.Tensor:
    """(B,) round(upsample × source length) slots per sentence, at most `max_slots` (0: no
    cap). round() in training and decoding alike, so a fractional upsample (1.5) gives both
    the same slot counts."""
    counts = (src.ne(pad_id).sum(-1) * upsample).round().long()
    return counts.clamp_max(max_slots) if max_slots else counts


def padding_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """(B,) slot counts → (B, max count) True past each row's count."""
    return torch.arange(int(counts.max()), device=counts.device)[None, :] >= counts[:, None]


def check_upsample(upsample: float, max_slots: int, max_length: int, positions: int,
                   config_path: str) -> None:
    """The slot settings of an upsampling model, checked against the decoder's positions."""
    if upsample <= 0:
        raise ValueError(f"{config_path}.upsample: must be > 0, got {upsample}")
    if max_slots < 0:
        raise ValueError(f"{config_path}.max_slots: a cap (≥ 1) on the slots, or 0 for none; "
                         f"got {max_slots}")
    most_slots = min(upsample * max_length, max_slots or float("inf"))
    if most_slots > positions:
        raise ValueError(f"{config_path}.upsample: {upsample} × max_length {max_length} slots "
                         f"exceed the decoder's max_positions {positions} (or cap them with "
                         f"max_slots)")
