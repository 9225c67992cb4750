"""Search correctness on tiny random models: cache vs recomputation, beam vs greedy vs exhaustive
search, batch vs single sentence, length rules, and sampling truncation."""
from __future__ import annotations

import itertools
from typing import List, Optional

import pytest
import torch
from torch import nn

from paragen.decoders.transformer import TransformerDecoder
from paragen.models.seq2seq import Seq2Seq
from paragen.registry import build
from paragen.search import BeamSearch, GreedySearch, SamplingSearch
from paragen.search.base import top_k

PAD, UNK, BOS, EOS = 0, 1, 2, 3
IDS = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD)


def make_model(vocab: int, seed: int, max_positions: int = 1024) -> Seq2Seq:
    """Untied output layer scaled ×3: a tied random model mostly copies its input token, and a
    flat one has near-ties; this gives varied, fairly peaked next-token distributions."""
    torch.manual_seed(seed)
    layer = {"num_layers": 2, "num_heads": 2, "ffn_dim": 32}
    model = Seq2Seq(encoder={"class": "TransformerEncoder", **layer},
                    decoder={"class": "TransformerDecoder", "max_positions": max_positions,
                             **layer}, d_model=16,
                    share_embedding="none", src_vocab_size=vocab, tgt_vocab_size=vocab,
                    pad_id=PAD).eval()
    with torch.no_grad():
        model.decoder.output_projection.weight.mul_(3.0)
    return model


class BiasedDecoder(nn.Module):
    """Adds a fixed per-token bias to a decoder's logits: controls how soon eos wins."""

    def __init__(self, decoder: TransformerDecoder, bias: torch.Tensor):
        super().__init__()
        self.decoder, self.bias = decoder, bias

    def forward(self, tokens, memory, memory_padding, cache=None):
        return self.decoder(tokens, memory, memory_padding, cache=cache) + self.bias

    @property
    def max_positions(self) -> int:  # the position table that bounds the output length
        return self.decoder.max_positions

    def init_cache(self):
        return self.decoder.init_cache()

    reorder_cache = staticmethod(TransformerDecoder.reorder_cache)


def eos_biased(model: Seq2Seq, vocab: int, eos_bias: float) -> BiasedDecoder:
    bias = torch.zeros(vocab)
    bias[EOS] = eos_bias
    return BiasedDecoder(model.decoder, bias)


def random_batch(vocab: int, lengths: List[int], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths)), PAD)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(4, vocab, (n,), generator=gen)
    return src


def uncached_log_probs(decoder: nn.Module, prefix: torch.Tensor, memory, padding) -> torch.Tensor:
    """(N,T,V) log-probs recomputing the whole prefix (bos included), no cache."""
    return torch.log_softmax(decoder(prefix, memory, padding).float(), dim=-1)


def reference_greedy(decoder, memory, padding, max_len: int) -> List[int]:
    """Greedy for one sentence by full-prefix recomputation, with the documented length rules."""
    prefix = torch.tensor([[BOS]])
    for step in range(max_len + 1):
        lp = uncached_log_probs(decoder, prefix, memory, padding)[0, -1]
        lp[PAD] = -torch.inf
        token = EOS if step == max_len else int(lp.argmax())
        if token == EOS:
            break
        prefix = torch.cat([prefix, torch.tensor([[token]])], dim=1)
    return prefix[0, 1:].tolist()


def strip(tokens: torch.Tensor) -> List[List[int]]:
    return [[t for t in row if t != PAD] for row in tokens.tolist()]


@torch.no_grad()
def test_cached_decoding_matches_full_recomputation():
    vocab, model = 20, make_model(20, seed=2)
    src = random_batch(vocab, [7, 4, 2], seed=3)
    memory, padding = model.encoder(src)
    decoder = eos_biased(model, vocab, 2.0)
    cache, prefix = decoder.init_cache(), torch.full((3, 1), BOS)
    for _ in range(12):
        cached = decoder(prefix[:, -1:], memory, padding, cache=cache)[:, -1]
        full = decoder(prefix, memory, padding)[:, -1]
        torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
        prefix = torch.cat([prefix, full.argmax(-1, keepdim=True)], dim=1)

    search = GreedySearch(max_length_a=1.0, max_length_b=3)
    tokens, _ = search(decoder, memory, padding, **IDS)
    for i, n in enumerate([7, 4, 2]):
        expected = reference_greedy(decoder, memory[i:i + 1, :n], padding[i:i + 1, :n], n + 3)
        assert strip(tokens[i:i + 1])[0] == expected
    assert [len(row) for row in strip(tokens)] == [8, 7, 3]  # limits 10, 7, 5: two chose eos


@torch.no_grad()
@pytest.mark.parametrize("eos_bias", [0.0, 3.0])
def test_beam_of_one_is_greedy(eos_bias: float):
    vocab, model = 24, make_model(24, seed=4)
    src = random_batch(vocab, [9, 3, 6, 1, 5], seed=5)
    memory, padding = model.encoder(src)
    decoder = eos_biased(model, vocab, eos_bias)
    greedy_tokens, greedy_scores = GreedySearch()(decoder, memory, padding, **IDS)
    beam_tokens, beam_scores = BeamSearch(beam_size=1, lenpen=0.0)(decoder, memory, padding,
                                                                  **IDS)
    assert torch.equal(greedy_tokens, beam_tokens)
    torch.testing.assert_close(greedy_scores, beam_scores)


def exhaustive_best(decoder, memory, padding, max_len: int, min_length: int, lenpen: float,
                    vocab: int):
    """Best length-penalised hypothesis over every sequence of <= max_len tokens + eos."""
    emittable = [t for t in range(vocab) if t not in (PAD, EOS)]
    best_score, best = -torch.inf, None
    for n in range(min(min_length, max_len), max_len + 1):
        seqs = torch.tensor(list(itertools.product(emittable, repeat=n)), dtype=torch.long)
        seqs = seqs.view(len(emittable) ** n, n)
        prefix = torch.cat([torch.full((len(seqs), 1), BOS), seqs], dim=1)
        lp = uncached_log_probs(decoder, prefix, memory.expand(len(seqs), -1, -1),
                                padding.expand(len(seqs), -1))
        target = torch.cat([seqs, torch.full((len(seqs), 1), EOS)], dim=1)
        scores = lp.gather(2, target[:, :, None]).squeeze(2).sum(1) / float(n + 1) ** lenpen
        score, i = scores.max(0)
        if score > best_score:
            best_score, best = float(score), seqs[i].tolist()
    return best, best_score


@torch.no_grad()
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lenpen,min_length", [(0.0, 0), (1.0, 0), (2.0, 0), (1.0, 2)])
def test_large_beam_equals_exhaustive_search(seed: int, lenpen: float, min_length: int):
    vocab = 6  # pad, unk, bos, eos and two words: 4 emittable tokens
    model = make_model(vocab, seed=10 + seed)
    lengths = [3, 2]  # max_len = src_len: 3 and 2 (per sentence, under padding)
    src = random_batch(vocab, lengths, seed=seed)
    memory, padding = model.encoder(src)
    decoder = eos_biased(model, vocab, 0.5)
    # At most 4**2 live beams x 5 finite tokens = 80 candidates per step: none is ever pruned.
    search = BeamSearch(beam_size=80, lenpen=lenpen, max_length_a=1.0, max_length_b=0, min_length=min_length)
    tokens, scores = search(decoder, memory, padding, **IDS)
    for i, n in enumerate(lengths):
        best, best_score = exhaustive_best(decoder, memory[i:i + 1, :n], padding[i:i + 1, :n],
                                           max_len=n, min_length=min_length, lenpen=lenpen,
                                           vocab=vocab)
        assert strip(tokens[i:i + 1])[0] == best
        assert abs(float(scores[i]) - best_score) < 1e-4


@torch.no_grad()
@pytest.mark.parametrize("search", [GreedySearch(max_length_a=1.0, max_length_b=4),
                                    BeamSearch(beam_size=4, lenpen=1.0, max_length_a=1.0, max_length_b=4),
                                    BeamSearch(beam_size=3, lenpen=0.6, min_length=2)],
                         ids=["greedy", "beam4", "beam3-minlen"])
@pytest.mark.parametrize("compact_share", [0.0, 0.25, 1.0],
                         ids=["drop-at-once", "drop-by-quarters", "never-drop"])
def test_batch_equals_single_sentences(search, compact_share: float):
    # Finished rows may stay in the batch (decoded for nothing) until enough have finished;
    # when they leave must not change anyone's output.
    search.COMPACT_SHARE = compact_share
    vocab, model = 30, make_model(30, seed=4)
    lengths = [8, 2, 5, 11, 1, 6, 3]
    src = random_batch(vocab, lengths, seed=5)
    memory, padding = model.encoder(src)
    decoder = eos_biased(model, vocab, 2.0)
    tokens, scores = search(decoder, memory, padding, **IDS)
    rows = strip(tokens)
    limits = search.max_lengths(decoder, src.eq(PAD)).tolist()
    # Some sentences choose eos before their limit, at different steps: rows leave the batch.
    assert len({len(r) for r, n in zip(rows, limits) if len(r) < n}) > 1
    for i, n in enumerate(lengths):
        one_memory, one_padding = model.encoder(src[i:i + 1, :n])
        one_tokens, one_score = search(decoder, one_memory, one_padding, **IDS)
        assert strip(one_tokens)[0] == rows[i]
        assert abs(float(one_score) - float(scores[i])) < 1e-4


@pytest.mark.parametrize("rows,width,k", [(4, 8000, 8), (33, 2113, 6), (300, 4096, 16)])
def test_top_k_in_two_stages_equals_topk(rows: int, width: int, k: int):
    """Wide rows take the two-stage path (the last width is not a multiple of the chunk):
    the same values best first, at the same indices where values are distinct."""
    scores = torch.randn(rows, width, generator=torch.Generator().manual_seed(rows))
    scores[0, 3:] = -torch.inf  # fewer finite scores than k: banned tokens fill the rest
    scores[1] = scores[1].round(decimals=1)  # many ties
    values, indices = top_k(scores, k)
    expected = scores.topk(k, dim=1)
    assert torch.equal(values, expected.values)
    assert torch.equal(scores.gather(1, indices), values)
    assert torch.equal(indices[2:], expected.indices[2:])
    assert set(indices[0, :3].tolist()) == {0, 1, 2}


SEARCHES = {"greedy": lambda **kw: GreedySearch(**kw),
            "beam": lambda **kw: BeamSearch(beam_size=3, **kw),
            "sampling": lambda **kw: SamplingSearch(top_k=5, **kw)}


@torch.no_grad()
@pytest.mark.parametrize("kind", SEARCHES)
def test_length_rules(kind: str):
    vocab, model = 16, make_model(16, seed=6)
    lengths = [5, 3, 1]
    src = random_batch(vocab, lengths, seed=7)
    memory, padding = model.encoder(src)
    eager, reluctant = eos_biased(model, vocab, 30.0), eos_biased(model, vocab, -30.0)

    # min_length=0 never blocks an immediate eos.
    tokens, scores = SEARCHES[kind]()(eager, memory, padding, **IDS)
    assert tokens.shape == (3, 0) and bool(scores.isfinite().all())
    # min_length=3 blocks eos for exactly three steps.
    tokens, _ = SEARCHES[kind](min_length=3)(eager, memory, padding, **IDS)
    assert [len(r) for r in strip(tokens)] == [3, 3, 3]
    # Without eos, each sentence stops at its own int(max_length_a * src_len + max_length_b).
    tokens, _ = SEARCHES[kind](max_length_a=1.5, max_length_b=1)(reluctant, memory, padding, **IDS)
    assert [len(r) for r in strip(tokens)] == [8, 5, 2]
    # A forced eos wins over min_length.
    tokens, _ = SEARCHES[kind](max_length_a=0.0, max_length_b=2, min_length=5)(eager, memory, padding, **IDS)
    assert [len(r) for r in strip(tokens)] == [2, 2, 2]


@torch.no_grad()
@pytest.mark.parametrize("kind", SEARCHES)
def test_length_is_clamped_to_the_position_table(kind: str):
    vocab, model = 16, make_model(16, seed=6, max_positions=8)
    src = random_batch(vocab, [5, 2], seed=7)
    memory, padding = model.encoder(src)
    tokens, _ = SEARCHES[kind](max_length_b=20)(eos_biased(model, vocab, -30.0), memory, padding,
                                            **IDS)
    assert [len(r) for r in strip(tokens)] == [7, 7]  # positions 0..7: bos + 7 tokens, eos at 7


@torch.no_grad()
def test_sampling_top_k_one_is_greedy():
    vocab, model = 24, make_model(24, seed=4)
    src = random_batch(vocab, [9, 3, 6, 1, 5], seed=5)
    memory, padding = model.encoder(src)
    decoder = eos_biased(model, vocab, 3.0)
    greedy_tokens, greedy_scores = GreedySearch()(decoder, memory, padding, **IDS)
    torch.manual_seed(0)
    sample_tokens, sample_scores = SamplingSearch(top_k=1, temperature=0.7)(decoder, memory,
                                                                           padding, **IDS)
    assert torch.equal(greedy_tokens, sample_tokens)
    torch.testing.assert_close(greedy_scores, sample_scores)


class FixedDecoder(nn.Module):
    """Same next-token distribution at every step, whatever the input."""

    def __init__(self, probs: List[float]):
        super().__init__()
        self.logits = torch.tensor(probs).log()

    def forward(self, tokens, memory, memory_padding, cache=None):
        return self.logits.expand(tokens.size(0), tokens.size(1), -1)

    def init_cache(self):
        return []

    @staticmethod
    def reorder_cache(cache, order: Optional[torch.Tensor]) -> None:
        pass


@torch.no_grad()
@pytest.mark.parametrize("options,allowed", [
    ({"top_p": 0.7}, {4, 5}),                 # 0.5 + 0.3 reaches 0.7: token 6 and eos are out
    ({"top_p": 0.45}, {4}),                   # the top token alone already exceeds 0.45
    ({"top_k": 2}, {4, 5}),
    ({"top_k": 3, "top_p": 0.9}, {4, 5, 6}),  # top-k keeps eos out, top-p keeps 6 in
])
def test_sampling_stays_in_the_truncated_set(options, allowed):
    # pad, unk, bos, eos, 4, 5, 6
    decoder = FixedDecoder([1e-3, 1e-3, 1e-3, 0.047, 0.5, 0.3, 0.15])
    memory, padding = torch.zeros(400, 1, 4), torch.zeros(400, 1, dtype=torch.bool)
    torch.manual_seed(1)
    search = SamplingSearch(max_length_a=0.0, max_length_b=6, **options)
    tokens, _ = search(decoder, memory, padding, **IDS)
    assert tokens.shape == (400, 6)  # eos is outside every set above: all run to the limit
    assert set(tokens.unique().tolist()) == allowed


@torch.no_grad()
def test_untruncated_sampling_reaches_every_token():
    decoder = FixedDecoder([1e-3, 0.05, 0.05, 0.2, 0.3, 0.25, 0.15])
    memory, padding = torch.zeros(400, 1, 4), torch.zeros(400, 1, dtype=torch.bool)
    torch.manual_seed(2)
    tokens, scores = SamplingSearch(max_length_a=0.0, max_length_b=6)(decoder, memory, padding, **IDS)
    assert set(tokens.unique().tolist()) == {PAD, UNK, BOS, 4, 5, 6}  # pad: short sentences
    # Scores are the model's log-probs of the sampled sequence, eos included.
    lp = torch.log_softmax(decoder.logits, dim=-1)
    rows = strip(tokens)
    expected = torch.tensor([float(lp[r].sum() + lp[EOS]) for r in rows])
    torch.testing.assert_close(scores, expected)


def test_searches_build_from_config():
    search = build("search", {"class": "BeamSearch", "beam_size": 5, "lenpen": 0.6},
                   "task.generator.search")
    assert isinstance(search, BeamSearch) and search.beam_size == 5
    with pytest.raises(ValueError):
        SamplingSearch(top_p=0.0)
