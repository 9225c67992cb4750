"""Non-autoregressive generation: predict lengths, decode every slot in one parallel pass.

With `length_beam` = k > 1 this is noisy parallel decoding (NPD, Gu et al. 2018): k candidate
lengths per sentence (the classifier's top-k, or argmax ± k//2 with `length_candidates:
window`) are decoded together in one batch of B·k rows, and each sentence keeps the candidate
with the best *mean* token log-probability. ParaGen ranked by raw logits, which are not
comparable across lengths. An AR model (`reranker: path/to/teacher.pt`) may score the
candidates instead, by its length-normalised log-likelihood, or a CTC model by its CTC
likelihood. The AR reranker may be an exported folder (`paragen export`, e.g. ONNX int8):
it scores through the graph that verifies speculative drafts, at the exported graph's speed.

With `refine_steps` = n > 0, n more passes follow (as in Mask-Predict, Ghazvininejad et al.
2019): each keeps the `refine_keep` most confident share of a candidate's slots, feeds their
tokens back as decoder input (the way glancing showed reference tokens in training) and
re-predicts the rest. Each pass costs about one decoder pass more.

A CTC model (`CTCNAT`) has no length classifier: its slot count is upsample × source length,
and its output is always collapsed (repeats merged, blanks = the pad id dropped). NPD there
decodes k slot counts around that one, upsample × source length × (1 + `ctc_slot_step` ×
offset), offsets centred on 0 (k = 5, step 0.1: ×0.8 … ×1.2). A model with `max_slots` never
gets more slots than that cap (a capped sentence's larger candidates are the cap itself).

With `npd_threshold` = t (and k > 1) the candidates adapt to confidence: every sentence gets
a single pass first, and only those whose mean token log-probability in it is below t are
decoded again with the k candidates (and ranked by the reranker). A well-chosen t keeps most
of NPD's gain at a fraction of its cost, since a confident single pass is usually already
the candidate NPD would choose; `paragen bench --npd-threshold t` times it.

A single pass (k = 1, no refinement) returns None for the scores unless `return_scores` is
set: the scores need a log-softmax over the vocabulary at every slot, a sizeable share of the
output layer's time (`benchmarks/output_layer.py`), and nothing downstream (generate,
evaluate, serve) reads them. NPD and refinement rank by the scores, so they always compute them.
"""
from __future__ import annotations

from typing import Literal, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from paragen.errors import ConfigError
from paragen.interfaces import DAGModel, NATModel
from paragen.model_folder import stored_config
from paragen.models.loading import load_trained_model
from paragen.models.nat.ctc import CTCNAT
from paragen.registry import register_generator


@register_generator
class NATGenerator(nn.Module):
    # The setting that asks for refinement passes and its single-pass value: what a model
    # that cannot refine (an export) is told to set.
    refinement_setting = ("refine_steps", 0)

    def __init__(self, length_beam: int = 1, length_candidates: Literal["topk", "window"] = "topk",
                 remove_repeats: bool = False, reranker: Optional[str] = None,
                 refine_steps: int = 0, refine_keep: float = 0.7, ctc_slot_step: float = 0.1,
                 return_scores: bool = False, npd_threshold: Optional[float] = None, *,
                 model: nn.Module, bos_id: int, eos_id: int, pad_id: int,
                 config_path: str = "task.generator"):
        super().__init__()
        if length_beam < 1:
            raise ValueError(f"{config_path}.length_beam: must be ≥ 1, got {length_beam}")
        if refine_steps < 0 or not 0.0 <= refine_keep < 1.0:
            raise ValueError(f"{config_path}: refine_steps must be ≥ 0 and refine_keep in "
                             f"[0, 1), got {refine_steps} and {refine_keep}")
        if not isinstance(model, NATModel):
            raise ConfigError(f"{config_path}.class: NATGenerator needs a NAT model (GLAT, or a "
                              f"class with encode/predict_slots), got {type(model).__name__}; "
                              f"use SequenceGenerator for AR models")
        if isinstance(model, DAGModel):
            raise ConfigError(f"{config_path}.class: a DATransformer is decoded by DAGGenerator")
        if refine_steps and not model.supports_refinement:
            key, single = self.refinement_setting
            raise ValueError(f"{config_path}.{key}: {type(model).__name__} decodes in one pass "
                             f"(an exported graph has no input for fed-back tokens); set "
                             f"{key}: {single}, or decode with the PyTorch checkpoint")
        self.model, self.length_beam, self.length_candidates = model, length_beam, length_candidates
        self.refine_steps, self.refine_keep = refine_steps, refine_keep
        self.return_scores, self.npd_threshold = return_scores, npd_threshold
        self.upsample, self.ctc_slot_step = model.upsample, ctc_slot_step
        self.remove_repeats = remove_repeats or bool(self.upsample)
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.reranker = load_reranker(reranker, pad_id, f"{config_path}.reranker") \
            if reranker else None

    def candidate_lengths(self, length_logits: torch.Tensor, src_lengths: torch.Tensor,
                          k: Optional[int] = None) -> torch.Tensor:
        """(B,k) candidate target lengths (eos included), or a CTC model's slot counts
        (k: `length_beam` unless given)."""
        k = self.length_beam if k is None else k
        if self.upsample:
            offsets = torch.arange(k, device=src_lengths.device) - (k - 1) / 2
            cap = self.model.max_slots
            slots = src_lengths[:, None] * self.upsample
            if cap:
                slots = slots.clamp_max(cap)
            slots = slots * (1 + self.ctc_slot_step * offsets)
            return slots.round().long().clamp(1, cap or int(self.upsample
                                                            * self.model.max_length))
        k = min(k, length_logits.size(-1))
        if self.length_candidates == "topk":
            classes = length_logits.topk(k, dim=-1).indices
        else:
            offsets = torch.arange(k, device=length_logits.device) - (k - 1) // 2
            classes = length_logits.argmax(-1, keepdim=True) + offsets
            classes = classes.clamp(0, length_logits.size(-1) - 1)
        return self.model.class_to_length(classes, src_lengths)

    @torch.inference_mode()
    def forward(self, src: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B,S) source ids → (B,T) output ids padded with pad (eos removed) and (B,) scores
        (mean token log-probability, or the reranker's score of an NPD choice; None from a
        single pass without `return_scores`)."""
        encoded = self.model.encode(src)
        if self.npd_threshold is None or self.length_beam == 1:
            return self.decode(src, *encoded, self.length_beam)
        tokens, scores = self.decode(src, *encoded, 1, with_scores=True)
        unsure = (scores < self.npd_threshold).nonzero().squeeze(1)
        if unsure.numel() == 0:
            return tokens, scores
        npd_tokens, npd_scores = self.decode(
            src[unsure], *(None if t is None else t[unsure] for t in encoded), self.length_beam)
        width = max(tokens.size(1), npd_tokens.size(1))
        tokens = F.pad(tokens, (0, width - tokens.size(1)), value=self.pad_id)
        tokens[unsure] = F.pad(npd_tokens, (0, width - npd_tokens.size(1)), value=self.pad_id)
        scores[unsure] = npd_scores
        return left_align(tokens, self.pad_id), scores

    def decode(self, src: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
               length_logits: Optional[torch.Tensor], k: int, with_scores: bool = False
               ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """`forward` with k candidates per sentence, from the encoder's output."""
        model = self.model
        src_lengths = src.ne(self.pad_id).sum(-1)
        lengths = self.candidate_lengths(length_logits, src_lengths, k)
        batch, k = lengths.shape
        rows = torch.arange(batch, device=src.device).repeat_interleave(k)
        lengths = lengths.reshape(-1)
        slots = int(lengths.max())
        target_padding = torch.arange(slots, device=src.device)[None, :] >= lengths[:, None]
        sources = src  # each once, for the reranker
        if k > 1:
            src, memory, memory_padding = src[rows], memory[rows], memory_padding[rows]
        with_scores = with_scores or k > 1 or self.refine_steps > 0 or self.return_scores
        tokens, token_scores = model.predict_slots(src, memory, memory_padding, target_padding,
                                                   with_scores=with_scores)
        for step in range(self.refine_steps):
            keep_count = self.keep_count(step, lengths)
            tokens, token_scores = self.refine(src, memory, memory_padding, target_padding,
                                               keep_count, tokens, token_scores)
        tokens = tokens.masked_fill(target_padding, self.pad_id)
        if self.remove_repeats:  # before reranking: the teacher scores the final outputs
            tokens = collapse_repeats(tokens, self.pad_id)
        scores = None
        if with_scores:
            scores = token_scores.masked_fill(target_padding, 0.0).sum(-1) / lengths
            if self.reranker is not None and k > 1:
                scores = self.reranker(sources, tokens, self.bos_id, self.eos_id)
            best = scores.view(batch, k).argmax(-1)
            chosen = torch.arange(batch, device=src.device) * k + best
            tokens, scores = tokens[chosen], scores[chosen]
        tokens = tokens.masked_fill(tokens.eq(self.eos_id), self.pad_id)
        return left_align(tokens, self.pad_id), scores

    def keep_count(self, step: int, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) slots each row keeps in refinement pass `step`: floor(refine_keep × length)."""
        return (lengths.to(torch.float32) * self.refine_keep).floor().long()

    def refine(self, src: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
               target_padding: torch.Tensor, keep_count: torch.Tensor, tokens: torch.Tensor,
               scores: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """One refinement pass: keep the `keep_count` (B,) most confident slots per row,
        predict the others again given them."""
        rank = scores.masked_fill(target_padding, -torch.inf).argsort(-1, descending=True) \
            .argsort(-1)
        keep = rank < keep_count[:, None]
        new_tokens, new_scores = self.model.predict_slots(src, memory, memory_padding,
                                                          target_padding, tokens, keep)
        return torch.where(keep, tokens, new_tokens), torch.where(keep, scores, new_scores)


def collapse_repeats(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Replace each token equal to its left neighbour by pad ("a a b b b c" → "a b c")."""
    repeated = torch.zeros_like(tokens, dtype=torch.bool)
    repeated[:, 1:] = tokens[:, 1:].eq(tokens[:, :-1])
    return tokens.masked_fill(repeated, pad_id)


def left_align(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Move non-pad tokens to the left, keeping their order (a stable sort on is-pad)."""
    return left_align_with(tokens, None, pad_id)[0]


def left_align_with(tokens: torch.Tensor, scores: Optional[torch.Tensor], pad_id: int
                    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """`left_align(tokens)`, with each token's score (B,T) moved along (None stays None)."""
    order = tokens.eq(pad_id).to(torch.int8).argsort(dim=-1, stable=True)
    aligned = tokens.gather(1, order)
    width = max(int(aligned.ne(pad_id).sum(-1).max()) if aligned.numel() else 0, 1)
    return aligned[:, :width], None if scores is None else scores.gather(1, order)[:, :width]


def candidate_bodies(tokens: torch.Tensor, eos_id: int, pad_id: int
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Candidates (N,T) without eos, left-aligned and padded, and their lengths (N,)."""
    body = left_align(tokens.masked_fill(tokens.eq(eos_id), pad_id), pad_id)
    return body, body.ne(pad_id).sum(-1)


def per_candidate(k: int, *per_source: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Each source's rows repeated for its k candidates, which sit next to each other."""
    return per_source if k == 1 else tuple(t.repeat_interleave(k, dim=0) for t in per_source)


def load_reranker(path: str, pad_id: int, config_path: str = "task.generator.reranker"):
    """An AR teacher as a scoring function: mean log p(candidate + eos | source).

    `src` holds each source once (B rows) and `tokens` its k candidates next to each other
    (B·k rows): the teacher encodes every source once and scores all candidates in one
    teacher-forced decoder pass. A right-to-left teacher (`task.reverse_target`) reads each
    candidate reversed, as it was trained. A CTC model (`CTCNAT`) scores instead, by its
    CTC likelihood (`ctc_scorer`). An exported AR folder (`paragen export`, ONNX or
    TorchScript, int8 or not) scores through its block graph: no PyTorch weights needed, and
    an int8 graph makes reranked NPD cheaper."""
    teacher = load_trained_model(path, config_path)
    if isinstance(teacher, CTCNAT):
        return ctc_scorer(teacher, pad_id)
    family = getattr(teacher, "family", None)  # what an exported folder holds
    if family not in (None, "ar") or not hasattr(teacher, "decoder") or (
            family is None and isinstance(teacher, NATModel)):
        held = f"an exported {family} model" if family else type(teacher).__name__
        raise ConfigError(f"{config_path}: {path} holds {held}; a reranker is an AR "
                          f"Transformer (PyTorch, ONNX or TorchScript) or a PyTorch CTCNAT")
    reverse = bool(stored_config(path)["task"].get("reverse_target", False))

    @torch.inference_mode()
    def score(src: torch.Tensor, tokens: torch.Tensor, bos_id: int, eos_id: int) -> torch.Tensor:
        teacher.to(src.device)  # a no-op after the first call
        body, lengths = candidate_bodies(tokens, eos_id, pad_id)
        if reverse:  # position j takes token length-1-j; padding stays at the end
            flipped = (lengths[:, None] - 1 - torch.arange(body.size(1))).clamp(min=0)
            body = torch.where(body.ne(pad_id), body.gather(1, flipped), body)
        target = torch.cat([body, torch.full_like(body[:, :1], pad_id)], dim=1)
        target.scatter_(1, lengths[:, None], eos_id)
        prev = torch.cat([torch.full_like(body[:, :1], bos_id), body], dim=1)
        memory, memory_padding = per_candidate(tokens.size(0) // src.size(0),
                                               *teacher.encoder(src))
        logits = teacher_forced_logits(teacher.decoder, prev, memory, memory_padding).float()
        logp = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
        return logp.masked_fill(target.eq(pad_id), 0.0).sum(-1) / (lengths + 1)

    score.model = teacher  # what it runs
    return score


def teacher_forced_logits(decoder, prev: torch.Tensor, memory: torch.Tensor,
                          memory_padding: torch.Tensor) -> torch.Tensor:
    """(N,T,V) an AR decoder's logits after every prefix of `prev` (N,T), in one pass: the
    PyTorch decoder's parallel forward, or an exported decoder's block graph (the one that
    verifies speculative drafts) run from an empty cache, which is the same computation."""
    if isinstance(decoder, nn.Module):
        return decoder(prev, memory, memory_padding)
    positions = torch.arange(prev.size(1), device=prev.device).expand_as(prev)
    return decoder.forward_block(prev, positions, memory, memory_padding, decoder.init_cache())


# A candidate that a CTC model cannot emit (more tokens than its slots allow) gets this mean
# log-probability per token: far below any real one (about -1 to -5), yet finite, so that a
# weighted sum of features (`paragen rerank`) stays a number.
CTC_INFEASIBLE_SCORE = -100.0


def ctc_scorer(model: CTCNAT, pad_id: int):
    """A CTC model as a scoring function, called as `load_reranker`'s: log p(candidate |
    source) summed over every alignment of the candidate to the source's slots, divided by
    the candidate's length + 1 (as the AR score counts eos). One decoder pass per candidate
    row; the sources are encoded once."""

    @torch.inference_mode()
    def score(src: torch.Tensor, tokens: torch.Tensor, bos_id: int, eos_id: int) -> torch.Tensor:
        model.to(src.device)  # a no-op after the first call
        body, lengths = candidate_bodies(tokens, eos_id, pad_id)
        src, memory, memory_padding = per_candidate(tokens.size(0) // src.size(0), src,
                                                    *model.encoder(src))
        slot_padding = model.slot_padding(src, body)
        hidden = model.predict_hidden(src, memory, memory_padding, slot_padding)
        lprobs = torch.log_softmax(model.output_logits(hidden).float(), dim=-1)
        nll = F.ctc_loss(lprobs.transpose(0, 1), body, (~slot_padding).sum(-1), lengths,
                         blank=pad_id, reduction="none", zero_infinity=False)
        mean = -nll / (lengths + 1)
        return torch.where(torch.isfinite(mean), mean, torch.full_like(mean,
                                                                        CTC_INFEASIBLE_SCORE))

    return score
