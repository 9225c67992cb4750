"""Denoising pre-training (BART): noise statistics, fixed validation noise, exact resume,
`paragen train / evaluate`, fine-tuning translation from the whole pre-trained model."""
import copy
import json
import math
import os

import pytest
import torch
from conftest import shared_data_dir
from helpers import error_line, write_config

from paragen.checkpoint import load_checkpoint
from paragen.cli import main
from paragen.tasks.build import build_task
from paragen.tasks.noising import TextNoiser, poisson_spans
from paragen.trainers import Trainer

PAD, UNK, BOS, EOS, MASK, STOP = 0, 1, 2, 3, 4, 5
VOCAB = 1000
PIECES = ["<pad>", "<unk>", "<s>", "</s>", "<mask>", "."] + [f"w{i}" for i in range(6, VOCAB)]


def noiser(**options) -> TextNoiser:
    options = {"mask_ratio": 0.0, "random_ratio": 0.0, "permute_sentences": 0.0, **options}
    return TextNoiser(vocab_size=VOCAB, mask_id=MASK, eos_id=EOS, pad_id=PAD,
                      special_ids=[PAD, UNK, BOS, EOS], pieces=PIECES, **options)


def random_batch(rows=400, shortest=20, longest=120, seed=0) -> torch.Tensor:
    """`ids eos` rows of distinct real tokens (no sentence end), padded."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(shortest, longest + 1, (rows,), generator=generator)
    ids = torch.rand(rows, longest + 1, generator=generator).argsort(1) + 6
    positions = torch.arange(longest + 1)
    ids[positions[None, :] == lengths[:, None]] = EOS
    return ids.masked_fill(positions > lengths[:, None], PAD)


def text_of(rows: torch.Tensor):
    return [[t for t in row.tolist() if t not in (PAD, EOS)] for row in rows]


# ---------------------------------------------------------------- noise statistics
def test_infilling_rate_poisson_spans_one_mask_each():
    src = random_batch()
    out = noiser(mask_ratio=0.3)(src, torch.Generator().manual_seed(1))
    removed = masks = spans_covered = 0
    for original, noised in zip(text_of(src), text_of(out)):
        kept = [t for t in noised if t != MASK]
        assert kept == [t for t in original if t in set(kept)]  # order kept, nothing added
        removed += len(original) - len(kept)
        masks += noised.count(MASK)
        spans_covered += len(original) - len(kept)
    real = int((src.ne(PAD) & src.ne(EOS)).sum())
    assert removed / real == pytest.approx(0.3, abs=0.01)
    assert out.eq(EOS).sum(1).eq(1).all()  # one eos per row, at its end
    # every span, of any length (0: an insertion), is one <mask>: lengths drawn one per mask
    lengths = poisson_spans(torch.full((2000,), 300), 3.0, torch.Generator().manual_seed(2))
    whole = lengths[:, :-1][lengths[:, 1:].ge(0)]  # all but each row's last (cut) span
    assert whole.float().mean() == pytest.approx(3.0, abs=0.03)
    assert whole.float().var() == pytest.approx(3.0, abs=0.1)  # Poisson: variance = mean
    assert lengths.clamp_min(0).sum(1).eq(300).all()
    assert masks / max(removed, 1) == pytest.approx(1 / 3, abs=0.03)


def test_a_span_becomes_one_mask_and_empty_spans_insert_one():
    src = random_batch(rows=300, shortest=100, longest=100, seed=3)
    # λ=50: the first span covers the whole budget of 30 tokens, so one span per row
    out = noiser(mask_ratio=0.3, poisson_lambda=50.0)(src, torch.Generator().manual_seed(4))
    for original, noised in zip(text_of(src), text_of(out)):
        at = noised.index(MASK)
        assert noised == original[:at] + [MASK] + original[at + 30:]
    # λ=0.5: most spans are empty; each inserts a <mask> between two kept tokens
    out = noiser(mask_ratio=0.1, poisson_lambda=0.5)(src, torch.Generator().manual_seed(5))
    gaps = inserted = 0
    for original, noised in zip(text_of(src), text_of(out)):
        position = {t: i for i, t in enumerate(original)}
        kept = [-1] + [i for i, t in enumerate(noised) if t != MASK] + [len(noised)]
        where = [-1] + [position[noised[i]] for i in kept[1:-1]] + [len(original)]
        for (a, b), (x, y) in zip(zip(kept, kept[1:]), zip(where, where[1:])):
            masks, gap = b - a - 1, y - x - 1
            assert gap == 0 or masks >= 1  # removed tokens always leave a <mask>
            gaps += gap > 0
            inserted += gap == 0 and masks > 0
    assert gaps > 0 and inserted > 0


def test_sentence_permutation_keeps_the_sentences():
    generator = torch.Generator().manual_seed(5)
    rows = []
    for _ in range(200):  # 1..6 sentences of 1..5 tokens, each ended by a stop
        row = []
        for _ in range(torch.randint(1, 7, (1,), generator=generator).item()):
            length = torch.randint(1, 6, (1,), generator=generator).item()
            row += torch.randint(6, VOCAB, (length,), generator=generator).tolist() + [STOP]
        rows.append(row + [EOS])
    width = max(map(len, rows))
    src = torch.tensor([row + [PAD] * (width - len(row)) for row in rows])
    out = noiser(permute_sentences=1.0)(src, generator)
    assert out.shape == src.shape and torch.equal(out.eq(PAD), src.eq(PAD))
    changed = 0
    for original, noised in zip(text_of(src), text_of(out)):
        assert sorted(_sentences(original)) == sorted(_sentences(noised))
        changed += original != noised
    assert changed > 100
    half = noiser(permute_sentences=0.5)(src, torch.Generator().manual_seed(6))
    assert all(sorted(_sentences(o)) == sorted(_sentences(n))
               for o, n in zip(text_of(src), text_of(half)))


def _sentences(ids):
    """A row's sentences, each ended by the stop token."""
    sentences, current = [], []
    for t in ids:
        current.append(t)
        if t == STOP:
            sentences.append(tuple(current))
            current = []
    return sentences + ([tuple(current)] if current else [])


def test_deletion_token_masking_and_random_replacement_rates():
    src = random_batch()
    real = int((src.ne(PAD) & src.ne(EOS)).sum())
    out = noiser(delete_ratio=0.2)(src, torch.Generator().manual_seed(7))
    assert 1 - int((out.ne(PAD) & out.ne(EOS)).sum()) / real == pytest.approx(0.2, abs=0.01)
    assert not out.eq(MASK).any()
    assert all(n == [t for t in o if t in set(n)] for o, n in zip(text_of(src), text_of(out)))
    out = noiser(token_mask_ratio=0.15)(src, torch.Generator().manual_seed(8))
    assert out.shape == src.shape
    assert int(out.eq(MASK).sum()) / real == pytest.approx(0.15, abs=0.01)
    out = noiser(token_mask_ratio=0.5, random_ratio=0.2)(src, torch.Generator().manual_seed(9))
    changed = out.ne(src)
    assert (out[changed].eq(MASK).float().mean()) == pytest.approx(0.8, abs=0.02)
    assert out[changed & out.ne(MASK)].ge(STOP).all()  # a random replacement is a real token


@pytest.mark.parametrize("options, key", [({"mask_ratio": 1.5}, "task.mask_ratio"),
                                          ({"poisson_lambda": 0.0}, "task.poisson_lambda"),
                                          ({"mask_ratio": 0.6, "delete_ratio": 0.6},
                                           "task.mask_ratio + token_mask_ratio")])
def test_bad_noise_options_name_the_key(options, key):
    with pytest.raises(Exception, match=key.replace("+", r"\+")):
        noiser(**options)
