"""Masked-LM pre-training: masking statistics, fixed validation masks, exact resume, the
`paragen train / evaluate` verbs, and fine-tuning a classifier from the pre-trained encoder."""
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
from paragen.datasets import TextDataset
from paragen.errors import ConfigError
from paragen.tasks.build import build_task
from paragen.tasks.masking import TokenMasker, truncated_geometric
from paragen.tokenizers import SentencePieceTokenizer
from paragen.trainers import Trainer

PAD, UNK, BOS, EOS, MASK = 0, 1, 2, 3, 4
VOCAB = 1000
# ids 5..499 start a word (SentencePiece's "▁"), 500..999 continue one
PIECES = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"] + [
    f"\u2581w{i}" if i < 500 else f"p{i}" for i in range(5, VOCAB)]


def masker(**options) -> TokenMasker:
    return TokenMasker(vocab_size=VOCAB, mask_id=MASK, special_ids=[PAD, UNK, BOS, EOS],
                       pieces=PIECES, **options)


def random_batch(rows=600, shortest=20, longest=120, seed=0) -> torch.Tensor:
    """`[bos] ids [eos]` rows of random real tokens (a third continue a word), padded."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(shortest, longest + 1, (rows,), generator=generator)
    ids = torch.randint(5, VOCAB, (rows, longest + 2), generator=generator)
    ids = torch.where(torch.rand(ids.shape, generator=generator) < 0.67, ids % 495 + 5, ids)
    positions = torch.arange(longest + 2)
    ids[:, 0] = BOS
    ids[positions[None, :] == lengths[:, None] + 1] = EOS
    return ids.masked_fill(positions > lengths[:, None] + 1, PAD)


def runs_of(masked: torch.Tensor):
    """Lengths of the maximal runs of masked positions, over all rows."""
    padded = torch.nn.functional.pad(masked.long(), (1, 1))
    edges = padded[:, 1:] - padded[:, :-1]
    return (edges.eq(-1).nonzero()[:, 1] - edges.eq(1).nonzero()[:, 1]).float()


def any_in_word(masked: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
    """(B,S): whether any position of the same word (`word`: word index per position) is
    masked."""
    per_word = torch.zeros_like(word).scatter_reduce(1, word, masked.long(), "amax")
    return per_word.gather(1, word).bool()


# ---------------------------------------------------------------- masking statistics
def test_token_masking_rate_replacement_split_and_specials():
    src = random_batch()
    real = src.ge(5)
    out = masker()(src, torch.Generator().manual_seed(1))
    masked, shown, target = out["masked"], out["src"][out["masked"]], out["target"]
    assert masked.sum() / real.sum() == pytest.approx(0.15, abs=0.005)
    assert not masked[~real].any()  # never bos, eos or pad
    assert masked.sum(1).ge(1).all()  # every sentence contributes to the loss
    assert torch.equal(target, src[masked]) and torch.equal(out["src"][~masked], src[~masked])
    as_mask, kept = shown.eq(MASK), shown.eq(target)
    swapped = ~as_mask & ~kept
    assert as_mask.float().mean() == pytest.approx(0.8, abs=0.012)
    assert swapped.float().mean() == pytest.approx(0.1, abs=0.01)
    assert kept.float().mean() == pytest.approx(0.1, abs=0.01)
    assert shown[swapped].ge(5).all()  # a random replacement is a real token
    out = masker(mask_rate=0.3, mask_token_prob=0.5, random_token_prob=0.5)(src)
    shown = out["src"][out["masked"]]
    assert out["masked"].sum() / real.sum() == pytest.approx(0.3, abs=0.005)
    assert shown.eq(MASK).float().mean() == pytest.approx(0.5, abs=0.015)
    assert shown.eq(out["target"]).float().mean() < 0.01  # nothing kept


def test_whole_word_masking_masks_every_piece_of_a_word():
    src = random_batch()
    word = (src.lt(500) | src.ge(VOCAB)).long().cumsum(1)  # a special or "▁" piece starts one
    out = masker(whole_word=True)(src, torch.Generator().manual_seed(2))
    masked = out["masked"]
    real_words = src.ge(5) & src.lt(500)
    assert torch.equal(any_in_word(masked, word) & src.ge(5), masked)  # all pieces or none
    assert masked.sum() / src.ge(5).sum() == pytest.approx(0.15, abs=0.01)
    assert not masked[src.lt(5)].any()
    # about 15% of the words are chosen, whatever their length
    assert (masked & real_words).sum() / real_words.sum() == pytest.approx(0.15, abs=0.01)


def test_span_masking_lengths_and_rate():
    law = truncated_geometric(3.8, 10)
    assert float((law * torch.arange(1, 11)).sum()) == pytest.approx(3.8, abs=1e-4)
    assert float(law[0]) == pytest.approx(0.2 / (1 - 0.8 ** 10), abs=1e-3)  # SpanBERT's p=0.2
    assert torch.allclose(truncated_geometric(5.5, 10), torch.full((10,), 0.1))  # uniform
    src = random_batch(rows=300, shortest=400, longest=500, seed=3)
    real = src.ge(5)
    out = masker(span_masking=True)(src, torch.Generator().manual_seed(4))
    assert out["masked"].sum() / real.sum() == pytest.approx(0.15, abs=0.003)
    assert not out["masked"][~real].any()
    # At a low rate spans rarely touch, and in long rows the one span per row cut to the
    # budget counts little: the runs show the law's mean.
    long_rows = random_batch(rows=20, shortest=3000, longest=3000, seed=5)
    sparse = masker(span_masking=True, mask_rate=0.03)(long_rows,
                                                       torch.Generator().manual_seed(5))
    runs = runs_of(sparse["masked"])
    assert len(runs) > 400 and runs.mean() == pytest.approx(3.8, abs=0.3)
    assert runs.gt(10).float().mean() < 0.01  # only where two spans happen to touch
    words = masker(span_masking=True, whole_word=True)(src, torch.Generator().manual_seed(6))
    word = (src.lt(500) | src.ge(VOCAB)).long().cumsum(1)
    assert torch.equal(any_in_word(words["masked"], word) & real, words["masked"])
    assert words["masked"].sum() / real.sum() == pytest.approx(0.15, abs=0.01)


@pytest.mark.parametrize("options,key", [
    ({"mask_rate": 0.0}, "task.mask_rate"),
    ({"mask_token_prob": 0.9, "random_token_prob": 0.2}, "task.random_token_prob"),
    ({"span_masking": True, "span_mean_length": 6.0}, "task.span_mean_length"),
])
def test_bad_masking_options_name_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        masker(**options)


def test_text_dataset_reads_several_files(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("one\ntwo\n", encoding="utf-8")
    second.write_text("three\n\nfour\n", encoding="utf-8")
    data = TextDataset([str(first), str(second)], empty_lines="skip")
    assert data.lines() == ["one", "two", "three", "four"] and data.num_empty == 1
    with pytest.raises(Exception, match=rf"{second}:2: empty line"):
        TextDataset([str(first), str(second)], empty_lines="error")


# ---------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Pre-training text (Multi30k English + SST-2 sentences, two files), SST-2 train/dev
    TSV slices, and 300-piece tokenizers: with <mask>, without it, and with another size."""
    source = shared_data_dir()
    needed = [source / "multi30k" / "train.en", source / "sst2" / "train.tsv"]
    if not all(path.is_file() for path in needed):
        message = f"Multi30k or SST-2 not found under {source}: set PARAGEN_DATA"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("mlm")
    english = (source / "multi30k" / "train.en").read_text(encoding="utf-8").splitlines()
    sst2 = (source / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    paths = {"captions": root / "captions.txt", "reviews": root / "reviews.txt",
             "valid": root / "valid.txt", "train_tsv": root / "train.tsv",
             "dev_tsv": root / "dev.tsv"}
    paths["captions"].write_text("\n".join(english[:200]) + "\n", encoding="utf-8")
    paths["reviews"].write_text("\n".join(row.split("\t")[0] for row in sst2[1:201]) + "\n",
                                encoding="utf-8")
    paths["valid"].write_text("\n".join(english[200:240]) + "\n", encoding="utf-8")
    paths["train_tsv"].write_text("\n".join(sst2[:201]) + "\n", encoding="utf-8")
    paths["dev_tsv"].write_text("\n".join([sst2[0]] + sst2[300:340]) + "\n", encoding="utf-8")
    paths = {key: str(path) for key, path in paths.items()}
    for name, size, flags in (("spm", "300", ["--mask-token"]), ("plain", "300", []),
                              ("other", "250", ["--mask-token"])):
        assert main(["build-tokenizer", "--input", paths["captions"], paths["reviews"],
                     "--output", str(root / name), "--vocab-size", size, *flags]) == 0
        paths[name] = str(root / f"{name}.model")
    return {**paths, "root": root}


ENCODER = {"class": "TransformerEncoder", "num_layers": 2, "num_heads": 4, "ffn_dim": 128,
           "dropout": 0.0}


def mlm_config(corpus, save_dir, **trainer):
    return copy.deepcopy({
        "task": {
            "class": "MaskedLMTask", "max_length": 64,
            "tokenizer": {"class": "SentencePieceTokenizer", "model": corpus["spm"]},
            "data": {"train": {"class": "TextDataset",
                               "path": [corpus["captions"], corpus["reviews"]]},
                     "valid": {"class": "TextDataset", "path": corpus["valid"]}},
            "dataloader": {"train": {"class": "DataLoader", "sampler": {
                "class": "BucketSampler", "max_tokens": 1024, "max_sentences": 32}}},
            "model": {"class": "MaskedLM", "d_model": 64, "encoder": dict(ENCODER)},
            "trainer": {"class": "Trainer", "optimizer": {"class": "AdamW", "lr": 3e-3},
                        "lr_scheduler": {"class": "InverseSquareRoot", "warmup_steps": 5},
                        "max_steps": 10, "validate_interval": 5, "save_dir": str(save_dir),
                        "log_interval": 5, **trainer},
        },
        "env": {"device": "cpu", "seed": 1, "threads": 1, "no_progress_bar": True},
    })


@pytest.fixture(scope="module")
def pretrained(corpus):
    """A tiny masked LM trained for 10 steps through `paragen train`."""
    save_dir = corpus["root"] / "mlm"
    assert main(["train", "--config", write_config(mlm_config(corpus, save_dir),
                                                   corpus["root"] / "mlm.yaml")]) == 0
    return save_dir


def test_tokenizer_mask_symbol(corpus):
    tokenizer = SentencePieceTokenizer(corpus["spm"])
    assert tokenizer.mask_id == MASK and MASK in tokenizer.encode("a <mask> dog")
    assert tokenizer.special_ids == [PAD, UNK, BOS, EOS, MASK]
    assert SentencePieceTokenizer(corpus["plain"]).mask_id is None


def test_validation_masks_are_fixed_and_training_masks_are_drawn_anew(corpus, tmp_path):
    task = build_task(mlm_config(corpus, tmp_path / "run"))
    state = torch.get_rng_state()
    first, second = task.validate(), task.validate()
    assert first == second  # the same masks every time: a curve compares like with like
    assert torch.equal(torch.get_rng_state(), state)  # and training's stream is untouched
    assert first["valid.perplexity"] == pytest.approx(math.exp(first["valid.loss"]))
    assert 0 <= first["valid.masked_accuracy"] <= 100
    epoch = [batch["masked"] for batch in task.train_loader.epoch_batches(0)]
    again = [batch["masked"] for batch in task.train_loader.epoch_batches(0)]
    assert len(epoch) == len(again) and any(not torch.equal(a, b) for a, b in zip(epoch, again))
    batch = next(iter(task.train_loader.epoch_batches(0)))
    assert batch["ntokens"] == len(batch["target"]) == int(batch["masked"].sum())


def test_pretraining_writes_curves_and_evaluate_scores_text(pretrained, corpus, capsys):
    records = [json.loads(line) for line in open(pretrained / "metrics.jsonl")]
    validations = [r for r in records if r.get("validation")]
    assert [r["step"] for r in validations] == [5, 10]
    assert validations[-1]["valid.loss"] < math.log(300)  # better than uniform guessing
    stored = load_checkpoint(str(pretrained / "best.pt"))
    assert stored["config"]["task"]["trainer"]["assess_by"] == "valid.loss"
    assert stored["config"]["task"]["tokenizer"]["model"] == "tokenizer.model"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(pretrained)]) == 0
    printed = capsys.readouterr().out
    assert "valid masked_accuracy = " in printed and "masked|rate:0.15|seed:0|n:" in printed
    assert main(["evaluate", "--model", str(pretrained), "--input", corpus["captions"]]) == 0
    assert "test perplexity = " in capsys.readouterr().out
    assert main(["generate", "--model", str(pretrained), "--input", corpus["valid"]]) == 2
    assert "has no predict(lines)" in error_line(capsys)
    assert main(["evaluate", "--model", str(pretrained), "--output-dir", str(pretrained)]) == 2
    assert "a masked LM writes no outputs" in error_line(capsys)


def test_resumed_run_masks_exactly_as_an_uninterrupted_one(corpus, tmp_path):
    straight = tmp_path / "straight"
    config = mlm_config(corpus, straight, max_steps=6, validate_interval=3)
    assert main(["train", "--config", write_config(config, tmp_path / "a.yaml")]) == 0
    halves = tmp_path / "halves"
    config = mlm_config(corpus, halves, max_steps=3, validate_interval=3)
    path = write_config(config, tmp_path / "b.yaml")
    assert main(["train", "--config", path]) == 0
    assert main(["train", "--config", path, "task.trainer.max_steps=6"]) == 0
    expected = load_checkpoint(str(straight / "last.pt"))["model"]
    resumed = load_checkpoint(str(halves / "last.pt"))["model"]
    assert all(torch.equal(expected[key], resumed[key]) for key in expected)


def test_an_update_that_failed_is_repeated_with_the_same_masks(corpus, tmp_path):
    """A crash inside update 4 saves the state from before its batches were masked, so the
    resumed run draws the same masks and ends where an uninterrupted run does."""
    straight = mlm_config(corpus, tmp_path / "straight", max_steps=6, validate_interval=0)
    build_task(straight).run()
    config = mlm_config(corpus, tmp_path / "crashed", max_steps=6, validate_interval=0)
    task = build_task(copy.deepcopy(config))
    update, calls = task.trainer._update, []

    def failing_update(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("simulated failure in update 4")
        return update(*args, **kwargs)

    task.trainer._update = failing_update
    with pytest.raises(RuntimeError, match="simulated"):
        task.run()
    assert load_checkpoint(str(tmp_path / "crashed" / "last.pt"))["trainer"]["step"] == 3
    build_task(copy.deepcopy(config)).run()
    expected = load_checkpoint(str(tmp_path / "straight" / "last.pt"))["model"]
    resumed = load_checkpoint(str(tmp_path / "crashed" / "last.pt"))["model"]
    assert all(torch.equal(expected[key], resumed[key]) for key in expected)


def classifier_config(corpus, save_dir, tokenizer, **trainer):
    return copy.deepcopy({
        "task": {
            "class": "SequenceClassificationTask", "text": "sentence", "label": "label",
            "tokenizer": {"class": "SentencePieceTokenizer", "model": tokenizer},
            "data": {"train": {"class": "TsvDataset", "path": corpus["train_tsv"]},
                     "valid": {"class": "TsvDataset", "path": corpus["dev_tsv"]}},
            "model": {"class": "SequenceClassifier", "d_model": 64, "pooling": "mean",
                      "encoder": dict(ENCODER)},
            "trainer": {"class": "Trainer", "optimizer": {"class": "AdamW", "lr": 1e-3},
                        "max_steps": 2, "validate_interval": 2, "save_dir": str(save_dir),
                        **trainer},
        },
        "env": {"device": "cpu", "seed": 2, "threads": 1, "no_progress_bar": True},
    })


def test_finetuning_starts_from_exactly_the_pretrained_encoder(pretrained, corpus, tmp_path,
                                                              monkeypatch, caplog):
    seen = {}
    build_optimization = Trainer._build_optimization

    def snapshot(self, model):  # right after init_from, before any update
        seen.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        build_optimization(self, model)

    monkeypatch.setattr(Trainer, "_build_optimization", snapshot)
    checkpoint = str(pretrained / "best.pt")
    config = classifier_config(corpus, tmp_path / "sst2", corpus["spm"], init_from=checkpoint)
    with caplog.at_level("INFO", logger="paragen"):
        assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 0
    pretrained_weights = load_checkpoint(checkpoint)["model"]
    encoder = sorted(key for key in seen if key.startswith("encoder."))
    assert encoder == sorted(key for key in pretrained_weights if key.startswith("encoder."))
    assert all(torch.equal(seen[key], pretrained_weights[key]) for key in encoder)
    loaded = [r.getMessage() for r in caplog.records if "initialized from" in r.getMessage()]
    assert loaded == [f"initialized from {checkpoint}: encoder ({len(encoder)} tensors); "
                      f"fresh: head (4 tensors); not used from it: head (5 tensors)"]


def test_init_from_another_vocabulary_is_an_error(pretrained, corpus, tmp_path, capsys):
    config = classifier_config(corpus, tmp_path / "sst2", corpus["other"],
                               init_from=str(pretrained / "best.pt"))
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    line = error_line(capsys)
    assert "have this model's names but other shapes" in line
    assert "encoder.embed.tokens.weight (300, 64) there, (250, 64) here" in line


def test_bad_inputs_are_one_clear_error(corpus, tmp_path, capsys):
    config = mlm_config(corpus, tmp_path / "a")
    config["task"]["tokenizer"]["model"] = corpus["plain"]
    assert main(["train", "--config", write_config(config, tmp_path / "a.yaml")]) == 2
    line = error_line(capsys)
    assert "task.tokenizer:" in line and "has no <mask> symbol" in line
    assert "paragen build-tokenizer --mask-token" in line
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    config = mlm_config(corpus, tmp_path / "b")
    config["task"]["data"]["train"]["path"] = str(empty)
    assert main(["train", "--config", write_config(config, tmp_path / "b.yaml")]) == 2
    assert "task.data.train: the split has no samples" in error_line(capsys)
    config = mlm_config(corpus, tmp_path / "c")
    config["task"]["data"]["valid"] = {"class": "TsvDataset", "path": corpus["dev_tsv"]}
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert "reads plain lines of text (TextDataset)" in error_line(capsys)


def test_tiny_overfit_learns_the_sentences(corpus, tmp_path):
    """16 sentences, 200 updates: masked tokens are recovered far above the most frequent
    token's share (the best a model that ignores the context can do)."""
    text = tmp_path / "few.txt"
    text.write_text("\n".join(open(corpus["captions"]).read().splitlines()[:16]) + "\n",
                    encoding="utf-8")
    config = mlm_config(corpus, tmp_path / "run", max_steps=200, validate_interval=200)
    config["task"]["data"] = {"train": {"class": "TextDataset", "path": str(text)},
                              "valid": {"class": "TextDataset", "path": str(text)}}
    config["task"]["trainer"]["optimizer"]["lr"] = 5e-3
    config["task"]["trainer"]["lr_scheduler"]["warmup_steps"] = 20
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 0
    task = build_task({**config, "task": {**config["task"], "mode": "evaluate"}})
    batch = task.mask_batch(next(iter(task.loaders["valid"].epoch_batches(0))),
                            torch.Generator().manual_seed(0))
    most_frequent = 100 * torch.bincount(batch["target"]).max().item() / len(batch["target"])
    final = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")][-1]
    assert final["valid.masked_accuracy"] > max(50.0, most_frequent + 30)
