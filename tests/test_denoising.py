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


# ---------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Multi30k German and English lines (two files to denoise, pairs to fine-tune on) and
    300-piece joint tokenizers with and without <mask>."""
    source = shared_data_dir() / "multi30k"
    if not (source / "train.de").is_file():
        message = f"Multi30k not found under {source}: set PARAGEN_DATA"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("denoise")
    paths = {}
    for lang in ("de", "en"):
        lines = (source / f"train.{lang}").read_text(encoding="utf-8").splitlines()
        for name, part in (("train", lines[:200]), ("valid", lines[200:230])):
            paths[f"{name}.{lang}"] = str(root / f"{name}.{lang}")
            (root / f"{name}.{lang}").write_text("\n".join(part) + "\n", encoding="utf-8")
    for name, flags in (("spm", ["--mask-token"]), ("plain", [])):
        assert main(["build-tokenizer", "--input", paths["train.de"], paths["train.en"],
                     "--output", str(root / name), "--vocab-size", "300", *flags]) == 0
        paths[name] = str(root / f"{name}.model")
    return {**paths, "root": root}


MODEL = {"class": "Seq2Seq", "d_model": 64, "share_embedding": "all",
         "encoder": {"class": "TransformerEncoder", "num_layers": 1, "num_heads": 4,
                     "ffn_dim": 128, "dropout": 0.0},
         "decoder": {"class": "TransformerDecoder", "num_layers": 1, "num_heads": 4,
                     "ffn_dim": 128, "dropout": 0.0}}
TRAINER = {"class": "Trainer", "optimizer": {"class": "AdamW", "lr": 3e-3},
           "lr_scheduler": {"class": "InverseSquareRoot", "warmup_steps": 5}, "log_interval": 5}
ENV = {"device": "cpu", "seed": 1, "threads": 1, "no_progress_bar": True}


def denoise_config(corpus, save_dir, **trainer):
    return copy.deepcopy({
        "task": {
            "class": "DenoisingTask", "max_length": 64,
            "tokenizer": {"class": "SentencePieceTokenizer", "model": corpus["spm"]},
            "data": {"train": {"class": "TextDataset",
                               "path": [corpus["train.de"], corpus["train.en"]]},
                     "valid": {"class": "TextDataset", "path": corpus["valid.en"]}},
            "dataloader": {"train": {"class": "DataLoader", "sampler": {
                "class": "BucketSampler", "max_tokens": 1024, "max_sentences": 32}}},
            "model": MODEL,
            "trainer": {**TRAINER, "max_steps": 6, "validate_interval": 3,
                        "save_dir": str(save_dir), **trainer},
        },
        "env": ENV,
    })


@pytest.fixture(scope="module")
def pretrained(corpus):
    save_dir = corpus["root"] / "denoise"
    assert main(["train", "--config", write_config(denoise_config(corpus, save_dir),
                                                   corpus["root"] / "denoise.yaml")]) == 0
    return save_dir


def test_validation_noise_is_fixed_and_training_noise_is_drawn_anew(corpus, tmp_path):
    task = build_task(denoise_config(corpus, tmp_path / "run"))
    state = torch.get_rng_state()
    first, second = task.validate(), task.validate()
    assert first == second and torch.equal(torch.get_rng_state(), state)
    assert first["valid.perplexity"] == pytest.approx(math.exp(first["valid.loss"]))
    assert 0 <= first["valid.accuracy"] <= 100
    epoch = [batch["src"] for batch in task.train_loader.epoch_batches(0)]
    again = [batch["src"] for batch in task.train_loader.epoch_batches(0)]
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(epoch, again))
    batch = next(iter(task.train_loader.epoch_batches(0)))
    assert batch["src"].eq(task.noiser.mask_id).any()  # noised source, clean target
    assert not batch["target"].eq(task.noiser.mask_id).any()


def test_pretraining_and_evaluate_report_the_denoising_loss(pretrained, corpus, capsys):
    records = [json.loads(line) for line in open(pretrained / "metrics.jsonl")]
    assert [r["step"] for r in records if r.get("validation")] == [3, 6]
    stored = load_checkpoint(str(pretrained / "best.pt"))
    assert stored["config"]["task"]["trainer"]["assess_by"] == "valid.loss"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(pretrained)]) == 0
    printed = capsys.readouterr().out
    assert "valid accuracy = " in printed and "denoise|mask:0.3|seed:0|n:" in printed
    assert main(["evaluate", "--model", str(pretrained), "--input", corpus["valid.de"]]) == 0
    assert "test loss = " in capsys.readouterr().out
    assert main(["generate", "--model", str(pretrained), "--input", corpus["valid.en"]]) == 2
    assert "fine-tune it first" in error_line(capsys)


def test_resumed_run_noises_exactly_as_an_uninterrupted_one(corpus, tmp_path):
    straight = tmp_path / "straight"
    assert main(["train", "--config", write_config(denoise_config(corpus, straight),
                                                   tmp_path / "a.yaml")]) == 0
    halves = tmp_path / "halves"
    path = write_config(denoise_config(corpus, halves, max_steps=3), tmp_path / "b.yaml")
    assert main(["train", "--config", path]) == 0
    assert main(["train", "--config", path, "task.trainer.max_steps=6"]) == 0
    expected = load_checkpoint(str(straight / "last.pt"))["model"]
    resumed = load_checkpoint(str(halves / "last.pt"))["model"]
    assert all(torch.equal(expected[key], resumed[key]) for key in expected)


def test_translation_starts_from_the_whole_pretrained_model(pretrained, corpus, tmp_path,
                                                           monkeypatch):
    seen = {}
    build_optimization = Trainer._build_optimization

    def snapshot(self, model):  # right after init_from, before any update
        seen.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        build_optimization(self, model)

    monkeypatch.setattr(Trainer, "_build_optimization", snapshot)
    checkpoint = str(pretrained / "best.pt")
    config = copy.deepcopy({
        "task": {"class": "TranslationTask", "src": "de", "tgt": "en", "max_length": 64,
                 "tokenizer": {"class": "SentencePieceTokenizer", "model": corpus["spm"]},
                 "data": {"train": {"class": "ParallelTextDataset", "path": {
                     "de": corpus["train.de"], "en": corpus["train.en"]}}},
                 "model": MODEL,
                 "trainer": {**TRAINER, "max_steps": 1, "validate_interval": 0,
                             "save_dir": str(tmp_path / "mt"), "init_from": checkpoint}},
        "env": ENV})
    assert main(["train", "--config", write_config(config, tmp_path / "mt.yaml")]) == 0
    weights = load_checkpoint(checkpoint)["model"]
    assert sorted(seen) == sorted(weights)
    assert {key.split(".")[0] for key in seen} == {"encoder", "decoder"}
    assert all(torch.equal(seen[key], weights[key]) for key in weights)


def test_bad_inputs_are_one_clear_error(corpus, tmp_path, capsys):
    config = denoise_config(corpus, tmp_path / "a")
    config["task"]["tokenizer"]["model"] = corpus["plain"]
    assert main(["train", "--config", write_config(config, tmp_path / "a.yaml")]) == 2
    line = error_line(capsys)
    assert "task.tokenizer:" in line and "has no <mask> symbol" in line
    assert "paragen build-tokenizer --mask-token" in line
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    config = denoise_config(corpus, tmp_path / "b")
    config["task"]["data"]["train"]["path"] = str(empty)
    assert main(["train", "--config", write_config(config, tmp_path / "b.yaml")]) == 2
    assert "task.data.train: the split has no samples" in error_line(capsys)


@pytest.mark.slow
def test_tiny_overfit_rebuilds_the_sentences(corpus, tmp_path):
    """8 sentences, 300 updates: the teacher-forced reconstruction of noised sources becomes
    far more accurate than at the start."""
    text = tmp_path / "few.txt"
    text.write_text("\n".join(open(corpus["train.en"]).read().splitlines()[:8]) + "\n",
                    encoding="utf-8")
    config = denoise_config(corpus, tmp_path / "run", max_steps=300, validate_interval=300)
    config["task"]["data"] = {"train": {"class": "TextDataset", "path": str(text)},
                              "valid": {"class": "TextDataset", "path": str(text)}}
    task = build_task(copy.deepcopy(config))
    before = task.validate()["valid.accuracy"]
    task.run()
    final = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")][-1]
    assert final["valid.accuracy"] > max(80.0, before + 50)
