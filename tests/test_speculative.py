"""Speculative decoding: identical to greedy search whatever the drafter, cache rollback,
acceptance counts, length rules, relaxed acceptance, refusals, and `paragen generate`."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import torch
from torch import nn

from paragen.errors import ConfigError
from paragen.generators import SequenceGenerator, SpeculativeGenerator
from paragen.generators.drafting import Draft, NATDrafter
from paragen.models.nat import CMLM, CTCNAT, GLAT, NATCRF, DATransformer
from paragen.models.nat.base import padding_from_counts, upsampled_slot_counts
from paragen.models.seq2seq import Seq2Seq
from paragen.registry import build

PAD, UNK, BOS, EOS = 0, 1, 2, 3
IDS = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD)
VOCAB = 24
SEARCH = {"max_length_a": 1.0, "max_length_b": 3}
LAYER = {"num_layers": 2, "num_heads": 2, "ffn_dim": 32, "dropout": 0.0}


def make_ar(seed: int = 0, eos_bias: Optional[float] = None) -> Seq2Seq:
    """A random AR model with peaked next-token distributions (untied output layer ×3); with
    `eos_bias`, an output bias on eos sets how soon sentences end."""
    torch.manual_seed(seed)
    model = Seq2Seq({"class": "TransformerEncoder", **LAYER},
                    {"class": "TransformerDecoder", **LAYER}, d_model=16,
                    share_embedding="none", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB,
                    pad_id=PAD).eval()
    with torch.no_grad():
        model.decoder.output_projection.weight.mul_(3.0)
        if eos_bias is not None:
            weight = model.decoder.output_projection.weight
            model.decoder.output_projection = nn.Linear(16, VOCAB)
            model.decoder.output_projection.weight.copy_(weight)
            model.decoder.output_projection.bias.zero_()
            model.decoder.output_projection.bias[EOS] = eos_bias
    return model


def make_nat(model_class: type = GLAT, seed: int = 1, vocab: int = VOCAB, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    layer = {**LAYER, "num_layers": 1}
    return model_class({"class": "TransformerEncoder", **layer},
                       {"class": "TransformerDecoder", **layer}, d_model=16,
                       src_vocab_size=vocab, tgt_vocab_size=vocab, pad_id=PAD, **kwargs).eval()


def sources(count: int, seed: int, longest: int = 9) -> torch.Tensor:
    """Random sources of 1..longest tokens + eos, pad-filled."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, longest + 1, (count,), generator=generator)
    src = torch.randint(4, VOCAB, (count, longest + 1), generator=generator)
    src = src.masked_fill(torch.arange(longest + 1)[None, :] > lengths[:, None], PAD)
    return src.scatter(1, lengths[:, None], EOS)


def greedy(model: nn.Module, src: torch.Tensor, search: Dict = SEARCH
           ) -> Tuple[torch.Tensor, torch.Tensor]:
    generator = SequenceGenerator({"class": "GreedySearch", **search}, model=model, **IDS)
    return generator(src)


def speculative(model: nn.Module, drafter, search: Dict = SEARCH, **options
                ) -> SpeculativeGenerator:
    return SpeculativeGenerator(drafter, search=search, model=model, **IDS, **options)


def with_eos(tokens: torch.Tensor) -> List[List[int]]:
    """Each output row as a token list ending with eos: what a perfect drafter proposes."""
    return [row[row.ne(PAD)].tolist() + [EOS] for row in tokens]


class ListDrafter(nn.Module):
    """A stub drafter with fixed drafts per sentence (rows of the batch it is given), and
    fixed re-drafts in output coordinates: `redrafts[b][p]` proposes output token p.
    `unsure[b]`: the draft positions of row b it gives probability 0.1 (others 1)."""

    def __init__(self, drafts: List[List[int]], redrafts: Optional[List[List[int]]] = None,
                 unsure: Optional[List[List[int]]] = None):
        super().__init__()
        self.drafts, self.redrafts, self.unsure = drafts, redrafts, unsure
        self.can_redraft = redrafts is not None

    @staticmethod
    def _pack(rows: List[List[int]]) -> Draft:
        width = max(1, max(len(row) for row in rows))
        tokens = torch.tensor([row + [PAD] * (width - len(row)) for row in rows])
        return Draft(tokens, torch.tensor([len(row) for row in rows]))

    def first_draft(self, src: torch.Tensor, memory, memory_padding, with_log_probs=False):
        draft = self._pack(self.drafts)
        if with_log_probs and self.unsure is not None:
            draft.log_probs = torch.zeros(draft.tokens.shape)
            for row, positions in enumerate(self.unsure):
                draft.log_probs[row, positions] = math.log(0.1)
        return {"row": torch.arange(len(self.drafts))}, draft

    def redraft(self, context, prefix, prefix_lengths, with_log_probs=False):
        return self._pack([self.redrafts[row] for row in context["row"].tolist()])


def assert_same(result: Tuple[torch.Tensor, torch.Tensor], expected) -> None:
    assert torch.equal(result[0], expected[0])
    assert torch.allclose(result[1], expected[1], atol=1e-4)


# ---------------------------------------------------------------- the decoder's block step
def test_block_step_with_rollback_matches_full_recomputation():
    """Rows at different lengths feed blocks into one cache; rejected entries are never
    removed, only hidden and overwritten. Every logit equals a full uncached pass over the
    row's accepted prefix."""
    model = make_ar(3)
    src = sources(5, seed=4)
    memory, memory_padding = model.encoder(src)
    decoder = model.decoder
    generator = torch.Generator().manual_seed(5)
    accepted = [[BOS] for _ in range(5)]  # each row's accepted inputs
    cache = decoder.init_cache()
    for _ in range(6):
        width = int(torch.randint(1, 5, (1,), generator=generator))
        block = torch.randint(4, VOCAB, (5, width), generator=generator)
        block[:, 0] = torch.tensor([row[-1] for row in accepted])  # the newest accepted token
        start = torch.tensor([len(row) - 1 for row in accepted])
        positions = start[:, None] + torch.arange(width)
        with torch.no_grad():
            logits = decoder.forward_block(block, positions, memory, memory_padding, cache)
        buffer = cache[0]["k"]  # kept whole (it grows by doubling), not cut to this block
        assert buffer.is_contiguous() and buffer.size(2) >= int(positions.max()) + 1
        for b in range(5):
            inputs = torch.tensor([accepted[b][:-1] + block[b].tolist()])
            with torch.no_grad():
                full = decoder(inputs, memory[b:b + 1], memory_padding[b:b + 1])[0]
            assert torch.allclose(logits[b], full[-width:], atol=1e-5)
            keep = int(torch.randint(1, width + 1, (1,), generator=generator))
            accepted[b] = accepted[b][:-1] + block[b, :keep].tolist() + [
                int(torch.randint(4, VOCAB, (1,), generator=generator))]


# ---------------------------------------------------------------- identical to greedy
@pytest.mark.parametrize("drafter", ["glat", "ctc"])
@pytest.mark.parametrize("block_size", [0, 1, 3])
def test_random_nat_drafter_gives_greedy_output(drafter, block_size):
    """An untrained drafter's tokens are mostly rejected: the output is greedy's anyway,
    re-drafted (GLAT), re-aligned (CTC) or kept stale (either)."""
    model = make_ar(0)
    nat = make_nat(GLAT) if drafter == "glat" else make_nat(CTCNAT, upsample=2.0)
    src = sources(48, seed=block_size)
    expected = greedy(model, src)
    for redraft in (True, False):
        generator = speculative(model, nat, block_size=block_size, redraft=redraft)
        assert_same(generator(src), expected)
        stats = generator.statistics()
        assert stats["histogram"][0] == 0 and stats["sentence_steps"] > 0
        assert generator.redraft == redraft


@pytest.mark.parametrize("model_class", [CMLM, NATCRF])
def test_other_length_predicting_drafters_redraft_and_give_greedy_output(model_class):
    model = make_ar(0)
    src = sources(32, seed=6)
    generator = speculative(model, make_nat(model_class, seed=2), block_size=2)
    assert generator.redraft
    assert_same(generator(src), greedy(model, src))
    assert generator.statistics()["draft_passes"] > 1


@pytest.mark.parametrize("block_size", [0, 1, 3])
def test_perfect_drafter_is_accepted_block_by_block(block_size):
    """Drafts equal to greedy's output: every step gains min(k + 1, tokens left) tokens per
    sentence, so the number of verification passes is known exactly."""
    model = make_ar(0, eos_bias=1.0)
    src = sources(16, seed=7)
    expected = greedy(model, src)
    drafts = with_eos(expected[0])
    generator = speculative(model, ListDrafter(drafts), block_size=block_size)
    assert_same(generator(src), expected)
    gains: List[int] = []
    passes = 0
    for draft in drafts:
        left, steps = len(draft), 0
        while left:
            gained = min(block_size + 1, left) if block_size else left
            gains.append(gained)
            left, steps = left - gained, steps + 1
        passes = max(passes, steps)
    stats = generator.statistics()
    assert stats["verify_passes"] == passes and stats["draft_passes"] == 1
    assert stats["histogram"] == torch.bincount(torch.tensor(gains)).tolist()
    assert stats["mean_tokens_per_step"] == pytest.approx(sum(gains) / len(gains))
    if block_size == 0:
        assert passes == 1


def edit(tokens: List[int], kind: str, at: int, token: int) -> List[int]:
    if kind == "substitute":
        return tokens[:at] + [token] + tokens[at + 1:]
    if kind == "extra":
        return tokens[:at] + [token] + tokens[at:]
    return tokens[:at] + tokens[at + 1:]  # "missing"


@pytest.mark.parametrize("kind", ["substitute", "extra", "missing"])
def test_one_wrong_draft_token_costs_one_pass_when_redrafted(kind):
    """A perfect draft with one edit before its eos: a correct re-draft is accepted in the
    next pass; a kept draft is too after a substituted token, but stays out of step after
    an extra or a missing one. The output is greedy's either way."""
    model = make_ar(0, eos_bias=-1.0)
    src = sources(12, seed=8, longest=6)
    expected = greedy(model, src)
    perfect = with_eos(expected[0])
    assert min(len(d) for d in perfect) >= 3
    wrong = min(set(range(4, VOCAB)) - set(expected[0].unique().tolist()))  # never chosen
    drafts = [edit(d, kind, len(d) // 2, wrong) for d in perfect]
    redrafted = speculative(model, ListDrafter(drafts, redrafts=perfect))
    assert_same(redrafted(src), expected)
    assert redrafted.statistics()["verify_passes"] == 2
    assert redrafted.statistics()["draft_passes"] == 2
    kept = speculative(model, ListDrafter(drafts), redraft=True)  # cannot re-draft: keeps it
    assert_same(kept(src), expected)
    assert kept.statistics()["draft_passes"] == 1
    if kind == "substitute":
        assert kept.statistics()["verify_passes"] == 2
    else:
        assert kept.statistics()["verify_passes"] > 2


class TableCTC(nn.Module):
    """A stand-in CTC model whose slot logits are a given (B,T,V) table: the decoder state
    of a slot is its row of logits, and the output layer reads logits off it."""

    upsample, max_slots, supports_refinement = 6.0, 0, True

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def encode(self, src):
        return None, None, None

    def predict_hidden(self, src, memory, memory_padding, padding):
        return self.table[:, :padding.size(1)]

    def best_tokens(self, hidden, padding, with_scores):
        return hidden.argmax(-1).masked_fill(padding, PAD), None

    def token_logits(self, hidden, tokens):
        return hidden.gather(2, tokens[:, None, :].expand(-1, hidden.size(1), -1))

    def slot_token_logits(self, hidden, tokens):
        return hidden.gather(2, tokens[..., None]).squeeze(2)


def ctc_table(draft: List[int], slots: int, width: int, extra: Dict[Tuple[int, int], float]
              ) -> torch.Tensor:
    """(width, VOCAB) slot logits whose best path reads `draft`: token i in slot 2i, blanks
    (pad) between and after, each best by 5; `extra[(slot, token)]` logits on top."""
    table = torch.zeros(width, VOCAB)
    table[:slots, PAD] = 5.0
    for i, token in enumerate(draft):
        table[2 * i, PAD], table[2 * i, token] = 0.0, 5.0
    for (slot, token), value in extra.items():
        table[slot, token] = value
    return table


@pytest.mark.parametrize("kind", ["extra", "missing"])
def test_ctc_drafts_realign_after_a_missing_or_extra_token(kind):
    """A CTC draft with one token too many or one missing: after the verifier's correction
    the prefix is aligned to the slots again and the rest of the draft is accepted in the
    next pass; kept stale, the draft stays out of step. Output: greedy's either way."""
    model = make_ar(0, eos_bias=-1.0)
    src = sources(12, seed=8, longest=6)
    expected = greedy(model, src)
    perfect = with_eos(expected[0])
    wrong = min(set(range(4, VOCAB)) - set(expected[0].unique().tolist()))
    slots = upsampled_slot_counts(src, PAD, TableCTC.upsample, 0).tolist()
    tables = []
    for target, count in zip(perfect, slots):
        # a token unlike its neighbours: a repeat would need a blank slot between the two
        at = next(i for i in range(len(target) // 2, 0, -1)
                  if target[i] not in (target[i - 1], target[i + 1]))
        if kind == "extra":  # the wrong token's slot is second best as a blank
            draft, extra = edit(target, kind, at, wrong), {(2 * at, PAD): 2.0}
        else:  # the missing token is second best in the blank slot where it belongs
            draft, extra = edit(target, kind, at, wrong), {(2 * at - 1, target[at]): 4.0}
        assert 2 * len(draft) <= count
        tables.append(ctc_table(draft, count, max(slots), extra))
    drafter = NATDrafter(TableCTC(torch.stack(tables)), EOS, PAD)
    assert drafter.can_redraft
    realigned = speculative(model, drafter)
    assert_same(realigned(src), expected)
    assert realigned.statistics()["verify_passes"] == 2
    kept = speculative(model, drafter, redraft=False)
    assert_same(kept(src), expected)
    assert kept.statistics()["verify_passes"] > 2


def test_rows_end_at_different_steps_and_at_the_length_limit():
    """Some sentences end early, others at max_length (eos forced); min_length blocks eos
    before it; a zero length limit gives empty outputs."""
    model = make_ar(2, eos_bias=6.0)
    src = sources(64, seed=9)
    src_lengths = src.ne(PAD).sum(1)
    nat = make_nat(GLAT, seed=3)
    for search in (SEARCH, {"max_length_a": 1.0, "max_length_b": 2, "min_length": 4},
                   {"max_length_a": 0.0, "max_length_b": 0}):
        expected = greedy(model, src, search)
        lengths = expected[0].ne(PAD).sum(1)
        limits = (search["max_length_a"] * src_lengths.double() + search["max_length_b"]).long()
        if search["max_length_b"]:
            assert lengths.eq(limits).any() and lengths.lt(limits).any()
        if "min_length" in search:  # it changes some outputs
            assert not torch.equal(greedy(model, src, {**search, "min_length": 0})[0],
                                   expected[0])
        for drafter in (nat, ListDrafter(with_eos(expected[0]))):
            for block_size in (0, 2):
                generator = speculative(model, drafter, search, block_size=block_size)
                assert_same(generator(src), expected)


def test_output_does_not_depend_on_the_batch():
    """Each sentence decoded alone gives what it gives in a batch (rows are independent)."""
    model = make_ar(4, eos_bias=0.0)
    src = sources(10, seed=10)
    generator = speculative(model, make_nat(CTCNAT, upsample=1.5), block_size=2)
    batched = generator(src)[0]
    for b in range(10):
        alone = generator(src[b:b + 1, :int(src[b].ne(PAD).sum())])[0][0]
        row = batched[b]
        assert torch.equal(alone[alone.ne(PAD)], row[row.ne(PAD)])


# ---------------------------------------------------------------- confidence-trimmed blocks
@pytest.mark.parametrize("drafter", ["glat", "ctc"])
def test_blocks_trimmed_by_drafter_confidence_give_greedy_output(drafter):
    """Trimming changes which positions a pass verifies, never the output; a trained-like
    drafter's confidences reach the generator (first drafts, re-drafts, re-alignments)."""
    model = make_ar(0)
    nat = make_nat(GLAT) if drafter == "glat" else make_nat(CTCNAT, upsample=2.0)
    src = sources(48, seed=14)
    expected = greedy(model, src)
    widths: List[int] = []  # of the blocks verified: last accepted token + draft tokens
    verify = model.decoder.forward_block
    model.decoder.forward_block = lambda tokens, *rest, **options: (
        widths.append(tokens.size(1)) or verify(tokens, *rest, **options))
    assert_same(speculative(model, nat)(src), expected)
    assert max(widths) > 2
    widths.clear()
    # an untrained drafter is below 0.99 on every token: each pass verifies one of them
    assert_same(speculative(model, nat, min_confidence=0.99)(src), expected)
    assert max(widths) == 2


def test_an_unsure_draft_token_ends_the_block():
    """A perfect draft with one unsure token at position u: the first pass verifies tokens
    0..u and gains u + 2 (the verifier's own token after the block is the draft's too); the
    next pass takes the rest. Without trimming one pass takes the whole draft."""
    model = make_ar(0, eos_bias=-1.0)
    src = sources(12, seed=8, longest=6)
    expected = greedy(model, src)
    drafts = with_eos(expected[0])
    assert min(len(d) for d in drafts) >= 4
    unsure = [[1] for _ in drafts]
    trimmed = speculative(model, ListDrafter(drafts, unsure=unsure), min_confidence=0.5)
    assert_same(trimmed(src), expected)
    stats = trimmed.statistics()
    gains = [3] * len(drafts) + [len(d) - 3 for d in drafts if len(d) > 3]
    assert stats["verify_passes"] == 2
    assert stats["histogram"] == torch.bincount(torch.tensor(gains)).tolist()
    whole = speculative(model, ListDrafter(drafts, unsure=unsure))
    assert_same(whole(src), expected)
    assert whole.statistics()["verify_passes"] == 1
    with pytest.raises(ValueError, match="min_confidence"):
        speculative(model, ListDrafter(drafts), min_confidence=1.0)


def test_ctc_draft_log_probs_are_those_of_the_first_slot_of_each_token():
    nat = make_nat(CTCNAT, upsample=2.0, seed=4)
    src = sources(6, seed=3)
    _, draft = NATDrafter(nat, EOS, PAD).first_draft(src, None, None, with_log_probs=True)
    _, without = NATDrafter(nat, EOS, PAD).first_draft(src, None, None)
    assert without.log_probs is None and torch.equal(without.tokens, draft.tokens)
    with torch.no_grad():
        memory, memory_padding, _ = nat.encode(src)
        slots = upsampled_slot_counts(src, PAD, 2.0, 0)
        padding = padding_from_counts(slots)
        hidden = nat.predict_hidden(src, memory, memory_padding, padding)
        best, tokens = torch.log_softmax(nat.output_logits(hidden).float(), -1).max(-1)
    for b in range(src.size(0)):
        expected_tokens, expected_scores, previous = [], [], None
        for slot in range(int(slots[b])):
            token = int(tokens[b, slot])
            if token != PAD and token != previous:
                expected_tokens.append(token)
                expected_scores.append(float(best[b, slot]))
            previous = token
        n = int(draft.lengths[b])
        assert draft.tokens[b, :n].tolist() == expected_tokens[:n]
        assert draft.log_probs[b, :n].tolist() == pytest.approx(expected_scores[:n], abs=1e-5)


def test_warns_once_that_bf16_output_may_differ_from_greedy(caplog):
    model, nat, src = make_ar(0), make_nat(GLAT), sources(4, seed=2)
    with caplog.at_level(logging.WARNING, logger="paragen"):
        speculative(model, nat)(src)
        assert "may differ" not in caplog.text
        generator = speculative(model.to(torch.bfloat16), nat)
        generator(src)
        generator(src)
        relaxed = speculative(model, nat, accept_top=2)  # not greedy's anyway: no warning
        relaxed(src)
    assert caplog.text.count("may differ from greedy") == 1


# ---------------------------------------------------------------- relaxed acceptance
def constrained_teacher_lprobs(generator: SpeculativeGenerator, model: nn.Module,
                               src: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(B,T+1,V) the AR model's log-probs along each output (+ eos), under the length rules."""
    lengths = tokens.ne(PAD).sum(1)
    target = torch.cat([tokens, torch.full_like(tokens[:, :1], PAD)], 1)
    target = target.scatter(1, lengths[:, None], EOS)
    prev = torch.cat([torch.full_like(tokens[:, :1], BOS), target[:, :-1]], 1)
    with torch.no_grad():
        lprobs = torch.log_softmax(model(src, prev)["logits"].float(), -1)
    memory_padding = src.eq(PAD)
    max_len = generator.search.max_lengths(model.decoder, memory_padding)
    steps = torch.arange(prev.size(1)).expand(prev.size(0), -1)
    generator.constrain_(lprobs, steps, max_len)
    return lprobs, target, lengths


def test_relaxed_acceptance_changes_output_only_when_enabled():
    model = make_ar(0)
    src = sources(48, seed=11)
    expected = greedy(model, src)
    nat = make_nat(GLAT, seed=5)
    assert_same(speculative(model, nat, accept_top=1, accept_tolerance=5.0)(src), expected)
    relaxed = speculative(model, nat, accept_top=3, accept_tolerance=2.0)
    tokens, _ = relaxed(src)
    assert not torch.equal(tokens, expected[0])
    # Every output token (and eos) passes the rule against the AR model's own distribution.
    lprobs, target, lengths = constrained_teacher_lprobs(relaxed, model, src, tokens)
    chosen = lprobs.gather(2, target[..., None]).squeeze(2)
    rank = lprobs.gt(chosen[..., None]).sum(-1)
    real = torch.arange(target.size(1))[None, :] <= lengths[:, None]
    assert bool(((rank < 3) & (chosen >= lprobs.max(-1).values - 2.0))[real].all())
    assert bool(rank[real].gt(0).any())  # and some are not greedy's


def test_accepting_any_allowed_token_returns_the_draft():
    """With the top-V tokens and any tolerance allowed, a draft of allowed tokens is the
    output: one pass per sentence."""
    model = make_ar(1)
    src = sources(8, seed=12)
    generator = torch.Generator().manual_seed(13)
    drafts = [torch.randint(4, VOCAB, (int(n),), generator=generator).tolist() + [EOS]
              for n in torch.randint(0, 4, (8,), generator=generator)]
    relaxed = speculative(model, ListDrafter(drafts), accept_top=VOCAB, accept_tolerance=1e9)
    tokens, _ = relaxed(src)
    assert with_eos(tokens) == drafts
    assert relaxed.statistics()["verify_passes"] == 1


# ---------------------------------------------------------------- refusals
def test_refuses_other_vocabularies_non_nat_drafters_and_other_searches():
    model = make_ar(0)
    with pytest.raises(ConfigError, match="vocabulary .* differs"):
        speculative(model, make_nat(GLAT, vocab=VOCAB + 1))
    with pytest.raises(ConfigError, match="a NAT model drafts"):
        speculative(model, make_ar(1))
    with pytest.raises(ConfigError, match="a NAT model drafts"):
        speculative(model, make_nat(DATransformer, upsample=2.0))
    with pytest.raises(ConfigError, match="GreedySearch"):
        speculative(model, make_nat(GLAT), {"class": "BeamSearch"})
    with pytest.raises(ConfigError, match="task.generator.block_size"):
        build("generator", {"class": "SpeculativeGenerator", "drafter": "unused",
                            "block_size": -1}, "task.generator", model=model, **IDS)


# ---------------------------------------------------------------- end to end
def test_generate_with_trained_drafters_matches_greedy(small_corpus, tmp_path, tiny_model):
    """`paragen generate` on a tiny trained AR model, with a tiny trained GLAT or CTC model
    as drafter, writes greedy's output line for line. The CTC drafter starts from the AR
    model with its encoder frozen (`task.trainer.freeze`): its encoder stays the AR model's,
    so it drafts from the AR model's encoder output."""
    from helpers import tiny_config, write_config

    from paragen.checkpoint import load_checkpoint
    from paragen.cli import main
    from paragen.tasks.build import load_trained_task

    frozen = {"init_from": str(tiny_model / "last.pt"), "freeze": ["encoder.*"]}
    for name, model, criterion, trainer in (
            ("glat", {"class": "GLAT"}, "GlancingCrossEntropy", {}),
            ("ctc", {"class": "CTCNAT", "upsample": 2.0}, "GlancingCTC", frozen)):
        config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                             tmp_path / name, max_steps=5, **trainer)
        config["task"]["model"].update(model)
        config["task"]["criterion"] = {"class": criterion}
        config["task"]["generator"] = {"class": "NATGenerator"}
        assert main(["train", "--config", write_config(config, tmp_path / f"{name}.yaml")]) == 0
    ar = load_checkpoint(str(tiny_model / "last.pt"))["model"]
    ctc = load_checkpoint(str(tmp_path / "ctc" / "last.pt"))["model"]
    encoder = [key for key in ar if key.startswith("encoder.")]
    assert encoder and all(torch.equal(ar[key], ctc[key]) for key in encoder)
    assert any(not torch.equal(ar[key], ctc[key]) for key in ar if key.startswith("decoder."))
    source = small_corpus["valid"]["de"]
    outputs = {}
    for name, block_size in (("greedy", None), ("glat", 4), ("ctc", 0)):
        overrides = [] if block_size is None else [
            "--task.generator.class=SpeculativeGenerator",
            f"--task.generator.drafter={tmp_path / name}",
            f"--task.generator.block_size={block_size}"]
        out = tmp_path / f"{name}.en"
        assert main(["generate", "--model", str(tiny_model), "--input", source, "--output",
                     str(out), *overrides]) == 0
        outputs[name] = out.read_text(encoding="utf-8").splitlines()
        if block_size is not None:
            task = load_trained_task(str(tiny_model), "infer", [o[2:] for o in overrides])
            assert isinstance(task.generator, SpeculativeGenerator)
            lines = Path(source).read_text(encoding="utf-8").splitlines()[:3]
            assert task.translate(lines) == outputs["greedy"][:3]
            assert task.generator.statistics()["verify_passes"] > 0
            assert task.generator.drafter.shares_encoder == (name == "ctc")
    assert len(outputs["greedy"]) == 40
    assert outputs["glat"] == outputs["greedy"] and outputs["ctc"] == outputs["greedy"]


@pytest.fixture(scope="module")
def ctc_drafter(small_corpus, tmp_path_factory) -> Path:
    """A tiny CTCNAT trained for 5 steps (the tokenizer of `tiny_model`)."""
    from helpers import tiny_ctc_config, write_config

    from paragen.cli import main

    root = tmp_path_factory.mktemp("ctc-drafter")
    config = tiny_ctc_config(small_corpus["train"], small_corpus["valid"],
                             small_corpus["spm"], root / "run", max_steps=5)
    assert main(["train", "--config", write_config(config, root / "ctc.yaml")]) == 0
    return root / "run"


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_ar_model_verifies_exported_drafts_like_greedy(small_corpus, tmp_path,
                                                                tiny_model, ctc_drafter, fmt):
    """The exported path: an exported AR model's block graph verifies an exported CTC
    drafter's drafts, and the output is the exported model's greedy output."""
    from paragen.cli import main
    from paragen.tasks.build import load_trained_task

    for name, folder in (("ar", tiny_model), ("ctc", ctc_drafter)):
        assert main(["export", "--model", str(folder), "--format", fmt,
                     "--output", str(tmp_path / f"{name}-{fmt}")]) == 0
    exported = str(tmp_path / f"ar-{fmt}")
    lines = Path(small_corpus["valid"]["de"]).read_text(encoding="utf-8").splitlines()
    greedy_task = load_trained_task(exported, "infer")  # its config decodes greedily
    expected = greedy_task.translate(lines)
    for block_size in (0, 3):
        task = load_trained_task(exported, "infer", [
            "task.generator.class=SpeculativeGenerator",
            f"task.generator.drafter={tmp_path / f'ctc-{fmt}'}",
            f"task.generator.block_size={block_size}"])
        assert isinstance(task.generator, SpeculativeGenerator)
        assert task.translate(lines) == expected
        assert task.generator.statistics()["verify_passes"] > 0
    if fmt == "onnx":  # bench --drafter: speculative rows beside greedy, the same output
        result = tmp_path / "bench.json"
        assert main(["bench", "--model", exported, "--drafter", str(tmp_path / "ctc-onnx"),
                     "--input", small_corpus["valid"]["de"],
                     "--reference", small_corpus["valid"]["en"], "--only", "greedy",
                     "speculative", "speculative-4", "speculative-trimmed", "--limit", "4",
                     "--threads", "1",
                     "--repeats", "1", "--output", str(result)]) == 0
        rows = json.loads(result.read_text())["rows"]
        assert [r["system"] for r in rows] == ["AR onnx greedy", "AR onnx speculative",
                                               "AR onnx speculative-4",
                                               "AR onnx speculative-trimmed"]
        assert len({r["bleu"] for r in rows}) == 1
