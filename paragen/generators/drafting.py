"""Drafts for speculative decoding: what a NAT model proposes for an AR model to verify.

A drafter proposes whole target sentences in one parallel pass, in *output coordinates*:
draft slot p proposes output token p (0-based, eos included, no bos). After the verifier
disagrees, the rest of a draft is stale; a drafter that can condition on a prefix
(`can_redraft`) proposes again given the accepted tokens, slot p < prefix length holding
accepted token p:

  * length-predicting models (GLAT, vanilla NAT, CMLM, NAT-CRF) re-draft: the accepted
    tokens enter the decoder input of the first slots as glanced tokens did in training
    (`predict_slots(..., given, given_mask)`); the slot count stays the predicted length,
    or one past the prefix when the sentence has outgrown it;
  * CTC models (`CTCNAT`) re-align, without another NAT pass: their slots do not line up
    with output positions, so there is no slot to put an accepted token in, but the slot
    states of the first pass are kept, and the prefix is aligned to them (a Viterbi pass
    over the prefix's CTC lattice, `ctc_prefix_ends`). The new draft is the prefix, then
    the collapsed best tokens of the slots after the one where prefix + continuation
    scores best. A draft that missed a word or held one too many is back in step after
    the verifier's correction, instead of staying one token off until it runs out.

A drafter whose encoder is the verifier's, tensor for tensor (trained with
`task.trainer.freeze: [encoder.*]` from the verifier's weights), drafts from the verifier's
encoder output instead of encoding the source a second time.

Asked for them (`with_log_probs`), drafts carry the drafter's log-probability of each token:
a CTC token's is that of the first slot of its run. `SpeculativeGenerator(min_confidence=...)`
ends a block at the first unsure token, so that a pass does not pay for positions the
verifier will most likely reject.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Protocol, Tuple, Union, runtime_checkable

import torch
from torch import nn

from paragen.errors import ConfigError
from paragen.generators.nat import collapse_repeats, left_align_with
from paragen.interfaces import DAGModel, NATModel
from paragen.modules.alignments import ctc_prefix_ends, lattice_states
from paragen.model_folder import stored_config
from paragen.models.loading import load_trained_model
from paragen.models.nat.base import padding_from_counts, upsampled_slot_counts

Context = Dict[str, torch.Tensor]  # batch-first tensors a drafter keeps per sentence


@dataclasses.dataclass
class Draft:
    """Row b drafts `tokens[b, :lengths[b]]` (B,D), in output coordinates; `log_probs` (B,D):
    the drafter's log-probability of each token, None when not asked for or not known."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    log_probs: Optional[torch.Tensor] = None


@runtime_checkable
class Drafter(Protocol):
    """What `SpeculativeGenerator` asks of a drafter.

    `first_draft(src (B,S), memory, memory_padding, with_log_probs)` → (context, Draft):
    each sentence's draft, cut after its first eos; memory (B,S,D) and memory_padding (B,S)
    are the verifier's encoder output, which a drafter sharing that encoder uses. `context`
    holds batch-first tensors (the drafter's encoder output...) that the generator keeps,
    row-selected, for `redraft(context, prefix (N,P), prefix_lengths (N,), with_log_probs)`
    → Draft: a new draft of N sentences given their accepted prefixes, in the same
    coordinates (slots below the prefix length are ignored). Only called when
    `can_redraft` is True. `with_log_probs`: fill `Draft.log_probs` if the drafter can.
    """

    can_redraft: bool

    def first_draft(self, src: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                    with_log_probs: bool = False) -> Tuple[Context, Draft]: ...

    def redraft(self, context: Context, prefix: torch.Tensor, prefix_lengths: torch.Tensor,
                with_log_probs: bool = False) -> Draft: ...


def cut_after_eos(tokens: torch.Tensor, lengths: torch.Tensor, start: torch.Tensor,
                  eos_id: int) -> torch.Tensor:
    """(B,) draft lengths ending at the first eos at or after slot `start` (B,), if any: a
    verifier that accepts the eos stops, so tokens past it are never worth checking."""
    slots = torch.arange(tokens.size(1), device=tokens.device)[None, :]
    is_eos = tokens.eq(eos_id) & (slots >= start[:, None]) & (slots < lengths[:, None])
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, lengths)
    return torch.minimum(first, lengths)


class NATDrafter(nn.Module):
    """A NAT model as a drafter: its single-pass output (collapsed for a CTC model), then
    prefix-conditioned re-drafts or re-alignments (see the module docstring)."""

    def __init__(self, model: nn.Module, eos_id: int, pad_id: int):
        super().__init__()
        self.model, self.eos_id, self.pad_id = model, eos_id, pad_id
        self.upsample = float(model.upsample)
        # Re-alignment needs the slot states and the output layer: a PyTorch CTC model.
        self.realigns = bool(self.upsample) and hasattr(model, "slot_token_logits")
        self.can_redraft = self.realigns or (not self.upsample and bool(model.supports_refinement))
        self.shares_encoder = False  # set by `check_shared_encoder`

    def check_shared_encoder(self, verifier: nn.Module) -> bool:
        """Draft from the verifier's encoder output from now on if the two encoders are
        the same function (`same_module`). Called once the verifier's weights are loaded."""
        self.shares_encoder = same_module(getattr(verifier, "encoder", None),
                                          getattr(self.model, "encoder", None))
        return self.shares_encoder

    def first_draft(self, src: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                    with_log_probs: bool = False) -> Tuple[Context, Draft]:
        model = self.model
        if self.shares_encoder:
            length_logits = None if self.upsample else model.length_logits(memory,
                                                                            memory_padding)
        else:
            memory, memory_padding, length_logits = model.encode(src)
        if self.upsample:
            slots = upsampled_slot_counts(src, self.pad_id, self.upsample,
                                          model.max_slots).clamp_min(1)
        else:
            src_lengths = src.ne(self.pad_id).sum(-1)
            slots = model.class_to_length(length_logits.argmax(-1, keepdim=True),
                                          src_lengths).squeeze(-1)
        padding = padding_from_counts(slots)
        if self.realigns:  # what a re-alignment reads: the slots' states and best tokens
            hidden = model.predict_hidden(src, memory, memory_padding, padding)
            tokens, scores = model.best_tokens(hidden, padding, with_scores=with_log_probs)
            context = {"hidden": hidden, "slot_tokens": tokens, "slots": slots,
                       "slot_logits": model.slot_token_logits(hidden, tokens)}
            if scores is not None:
                context["slot_log_probs"] = scores
        else:  # what a prefix-given pass reads
            tokens, scores = model.predict_slots(src, memory, memory_padding, padding,
                                                 with_scores=with_log_probs)
            context = {"src": src, "memory": memory, "memory_padding": memory_padding,
                       "slots": slots}
        tokens = tokens.masked_fill(padding, self.pad_id)
        if self.upsample:  # blanks (pad) and repeats go; what is left is the sentence
            tokens, scores = left_align_with(collapse_repeats(tokens, self.pad_id), scores,
                                             self.pad_id)
            lengths = tokens.ne(self.pad_id).sum(-1)
        else:
            lengths = slots
        lengths = cut_after_eos(tokens, lengths, torch.zeros_like(lengths), self.eos_id)
        return context, Draft(tokens, lengths, scores)

    def redraft(self, context: Context, prefix: torch.Tensor, prefix_lengths: torch.Tensor,
                with_log_probs: bool = False) -> Draft:
        if self.realigns:
            return self._realign(context, prefix, prefix_lengths)
        return self._redraft_given_prefix(context, prefix, prefix_lengths, with_log_probs)

    def _redraft_given_prefix(self, context: Context, prefix: torch.Tensor,
                              prefix_lengths: torch.Tensor, with_log_probs: bool) -> Draft:
        """The predicted length's slots (one past the prefix if that is longer; at most the
        model's max_length), the prefix given in the first ones."""
        slots = torch.maximum(context["slots"], prefix_lengths + 1).clamp_max(
            self.model.max_length)
        padding = padding_from_counts(slots)
        width = padding.size(1)
        given = prefix[:, :width]
        if given.size(1) < width:
            given = torch.nn.functional.pad(given, (0, width - given.size(1)),
                                            value=self.pad_id)
        given_mask = torch.arange(width, device=prefix.device)[None, :] < prefix_lengths[:, None]
        tokens, scores = self.model.predict_slots(context["src"], context["memory"],
                                                  context["memory_padding"], padding, given,
                                                  given_mask & ~padding,
                                                  with_scores=with_log_probs)
        tokens = tokens.masked_fill(padding, self.pad_id)
        return Draft(tokens, cut_after_eos(tokens, slots, prefix_lengths, self.eos_id), scores)

    def _realign(self, context: Context, prefix: torch.Tensor, prefix_lengths: torch.Tensor
                 ) -> Draft:
        """A CTC draft continuing the prefix: the prefix aligned to slots 0..t, then the best
        tokens of slots t+1.., for the t with the best total score (raw logits: every slot
        counts once in any path, so the softmax normalisers cancel). A row whose prefix no
        longer fits its slots gets an empty continuation (the verifier goes on alone). The
        continuation's log-probabilities are its slots' from the first pass, if it kept
        them."""
        pad = self.pad_id
        hidden, slot_tokens, slots = context["hidden"], context["slot_tokens"], context["slots"]
        prefix = prefix[:, :max(int(prefix_lengths.max()), 1)]
        emit = self.model.token_logits(hidden, lattice_states(prefix, pad))
        ends, on_label = ctc_prefix_ends(emit, slots, prefix, prefix_lengths, pad)
        positions = torch.arange(hidden.size(1), device=hidden.device)[None, :]
        # rest[:, t]: the best tokens' logits over slots t+1 .. (padding slots hold 0)
        logits = context["slot_logits"].masked_fill(positions >= slots[:, None], 0.0)
        rest = logits.flip(1).cumsum(1).flip(1) - logits
        best, end = (ends + rest).max(1)
        feasible = best.isfinite()
        last = prefix.gather(1, (prefix_lengths - 1).clamp_min(0)[:, None])
        # the slot where the prefix ends holds its last token (merging with a repeat of it
        # after) or a blank; the slots after it, their best tokens
        lead = torch.where(on_label.gather(1, end[:, None]), last, pad)
        tail = torch.where(positions > end[:, None], slot_tokens, pad).scatter(1, end[:, None],
                                                                               lead)
        tail = collapse_repeats(tail, pad).scatter(1, end[:, None], pad)
        tail, tail_log_probs = left_align_with(tail.masked_fill(~feasible[:, None], pad),
                                               context.get("slot_log_probs"), pad)
        width = prefix.size(1) + tail.size(1)
        tokens = torch.nn.functional.pad(prefix, (0, width - prefix.size(1)), value=pad)
        columns = prefix_lengths[:, None] + torch.arange(tail.size(1), device=tail.device)
        tokens = tokens.scatter(1, columns, tail)
        log_probs = None if tail_log_probs is None else torch.zeros(
            tokens.shape, device=tokens.device).scatter(1, columns, tail_log_probs.float())
        lengths = prefix_lengths + tail.ne(pad).sum(-1)
        return Draft(tokens, cut_after_eos(tokens, lengths, prefix_lengths, self.eos_id),
                     log_probs)


def vocabulary_sizes(model: nn.Module) -> Optional[Tuple[int, int]]:
    """(source, target) vocabulary sizes of an encoder-decoder (an exported one states
    them), None if unknown."""
    if getattr(model, "vocabulary_sizes", None):
        return model.vocabulary_sizes
    try:
        return (int(model.encoder.embed.tokens.num_embeddings),
                int(model.decoder.output_projection.out_features))
    except AttributeError:
        return None


def build_drafter(drafter: Union[str, nn.Module], verifier: nn.Module, eos_id: int,
                  pad_id: int, config_path: str) -> nn.Module:
    """A `Drafter` from a model folder / checkpoint path, a NAT model, or a ready drafter.

    Refused (one ConfigError): a model that is not a NAT model, and one whose vocabulary
    differs from the verifier's: drafts are token ids, so both must share the tokenizer.
    """
    if isinstance(drafter, str):
        if stored_config(drafter)["task"].get("reverse_target", False):
            raise ConfigError(f"{config_path}.drafter: {drafter} is a right-to-left model "
                              f"(reverse_target); drafts must read left to right")
        drafter = load_trained_model(drafter, f"{config_path}.drafter")
    if isinstance(drafter, Drafter):
        return drafter
    name = type(drafter).__name__
    if not isinstance(drafter, NATModel) or isinstance(drafter, DAGModel):
        raise ConfigError(f"{config_path}.drafter: a NAT model drafts (GLAT, vanilla NAT, CMLM, "
                          f"NAT-CRF, CTCNAT), got {name}")
    ours, theirs = vocabulary_sizes(verifier), vocabulary_sizes(drafter)
    if ours is None or theirs is None:
        raise ConfigError(f"{config_path}.drafter: cannot compare the vocabularies of "
                          f"{type(verifier).__name__} and {name}")
    if ours != theirs:
        raise ConfigError(f"{config_path}.drafter: its vocabulary (source {theirs[0]}, target "
                          f"{theirs[1]} ids) differs from the AR model's (source {ours[0]}, "
                          f"target {ours[1]}); the drafter must use the AR model's tokenizer")
    return NATDrafter(drafter.eval(), eos_id, pad_id)


def same_module(first: Optional[nn.Module], second: Optional[nn.Module]) -> bool:
    """Whether two modules compute the same function: same classes, same plain settings
    (head counts, norm placement...) in every submodule, and equal tensors."""
    if not isinstance(first, nn.Module) or not isinstance(second, nn.Module):
        return False
    if first is second:
        return True

    def settings(module: nn.Module) -> Dict[str, object]:  # the train/eval mode aside
        return {key: value for key, value in vars(module).items()
                if isinstance(value, (bool, int, float, str, type(None))) and key != "training"}

    modules_a, modules_b = list(first.modules()), list(second.modules())
    if len(modules_a) != len(modules_b) or any(
            type(a) is not type(b) or settings(a) != settings(b)
            for a, b in zip(modules_a, modules_b)):
        return False
    state_a, state_b = first.state_dict(), second.state_dict()
    return state_a.keys() == state_b.keys() and all(
        state_a[key].shape == state_b[key].shape and torch.equal(state_a[key], state_b[key])
        for key in state_a)
