"""Datasets, SentencePiece tokenizer, samplers and the data loader."""
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from paragen.dataloaders import DataLoader
from paragen.datasets import JsonlDataset, ParallelTextDataset, TextDataset, read_lines
from paragen.errors import DataError
from paragen.samplers import BucketSampler, SequentialSampler
from paragen.tokenizers import SentencePieceTokenizer


def write(path: Path, data) -> str:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


# ---------------------------------------------------------------- read_lines / datasets
def test_read_lines_strips_only_terminators(tmp_path):
    path = write(tmp_path / "a.txt", "a b \r\n  c\n\nd\u2028e")
    assert read_lines(path) == ["a b ", "  c", "", "d\u2028e"]


def test_read_lines_non_utf8_names_file_line_and_column(tmp_path):
    path = write(tmp_path / "x.de", b"ok\nfine\nabcd\xff rest\n")
    with pytest.raises(DataError, match=r"x\.de:3: not valid UTF-8 \(invalid start byte at column 5\)"):
        read_lines(path)


def test_read_lines_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.txt: file not found"):
        read_lines(str(tmp_path / "nope.txt"))


def test_parallel_unequal_lengths_names_both_files_and_counts(tmp_path):
    de = write(tmp_path / "t.de", "a\nb\nc\n")
    en = write(tmp_path / "t.en", "a\nb\n")
    with pytest.raises(DataError) as err:
        ParallelTextDataset({"de": de, "en": en})
    assert all(s in str(err.value) for s in (de, en, "3", "2"))


@pytest.fixture
def gappy(tmp_path):
    de = write(tmp_path / "g.de", "eins\n\nzwei\ndrei\n")
    en = write(tmp_path / "g.en", "one\ntwo\n  \nthree\n")
    return {"de": de, "en": en}


def test_empty_lines_keep_counts_and_logs(gappy, caplog):
    with caplog.at_level(logging.WARNING, logger="paragen"):
        data = ParallelTextDataset(gappy, empty_lines="keep")
    assert (len(data), data.num_empty, data.keys) == (4, 2, ["de", "en"])
    assert data[1] == {"de": "", "en": "two"}
    assert "2 empty line(s) kept" in caplog.text


def test_empty_lines_skip_drops_pairs_and_logs(gappy, caplog):
    with caplog.at_level(logging.WARNING, logger="paragen"):
        data = ParallelTextDataset(gappy, empty_lines="skip")
    assert [s["en"] for s in data] == ["one", "three"]
    assert data.num_empty == 2 and "skipped" in caplog.text


def test_empty_lines_error_names_file_and_line(gappy):
    with pytest.raises(DataError, match=r"g\.de:2: empty line"):
        ParallelTextDataset(gappy, empty_lines="error")


def test_text_dataset_skip_and_max_samples(tmp_path):
    path = write(tmp_path / "m.txt", "a\n\nb\nc\n")
    data = TextDataset(path, empty_lines="skip", max_samples=2)
    assert list(data) == ["a", "b"] and data.num_empty == 1


def test_jsonl_fields_and_errors(tmp_path):
    good = write(tmp_path / "ok.jsonl", '{"source": "s", "target": "t", "x": 1}\n')
    assert JsonlDataset(good, fields=["source", "target"])[0] == {"source": "s", "target": "t"}
    bad = write(tmp_path / "bad.jsonl", '{"a": 1}\n{"a": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid JSON"):
        JsonlDataset(bad)
    missing = write(tmp_path / "miss.jsonl", '{"source": "s"}\n{"target": "t"}\n')
    with pytest.raises(DataError, match=r"miss\.jsonl:2:source: missing field"):
        JsonlDataset(missing, fields=["source"])
    not_object = write(tmp_path / "list.jsonl", "[1, 2]\n")
    with pytest.raises(DataError, match=r"list\.jsonl:1: expected a JSON object"):
        JsonlDataset(not_object)


def test_multi30k_train_has_29000_pairs(data_dir):
    root = data_dir / "multi30k"
    data = ParallelTextDataset({"de": str(root / "train.de"), "en": str(root / "train.en")})
    assert len(data) == 29000 and data.num_empty == 0
    assert data[0]["de"].startswith("Zwei junge weiße Männer")
    assert len(data.lines("en")) == 29000


# ---------------------------------------------------------------- tokenizer
@pytest.fixture(scope="module")
def spm_model(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("spm")
    inputs = []
    for lang in ("de", "en"):
        lines = read_lines(str(data_dir / "multi30k" / f"train.{lang}"))[:2000]
        inputs.append(write(folder / f"slice.{lang}", "\n".join(lines) + "\n"))
    return SentencePieceTokenizer.learn(inputs, str(folder / "sub" / "joint"), vocab_size=500)


def test_sentencepiece_learn_is_atomic_and_special_ids_fixed(spm_model):
    assert sorted(p.name for p in Path(spm_model).parent.iterdir()) == ["joint.model", "joint.vocab"]
    tok = SentencePieceTokenizer(spm_model)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.vocab_size == 500


def test_sentencepiece_round_trip_and_ignores_special_ids(spm_model, data_dir):
    tok = SentencePieceTokenizer(spm_model)
    sentence = read_lines(str(data_dir / "multi30k" / "valid.en"))[0]
    ids = tok.encode(sentence)
    assert min(ids) > 3  # no bos/eos/pad added
    assert tok.decode(ids) == sentence
    padded = torch.tensor([2] + ids + [3, 0, 0])
    assert tok.decode(padded) == sentence
    texts = ["Ein Hund läuft.", sentence]
    batch = tok.encode_batch(texts)
    assert batch == [tok.encode(t) for t in texts]
    assert tok.decode_batch([[2] + b + [3] for b in batch]) == texts


def test_sentencepiece_missing_model_hints_build_tokenizer(tmp_path):
    with pytest.raises(DataError, match="paragen build-tokenizer"):
        SentencePieceTokenizer(str(tmp_path / "none.model"))


# ---------------------------------------------------------------- samplers
LENGTHS = np.random.default_rng(0).integers(1, 60, 29000)


def check_batches(batches, lengths, max_tokens):
    flat = np.concatenate([np.asarray(b, dtype=np.int64) for b in batches])
    assert np.array_equal(np.sort(flat), np.arange(len(lengths)))  # each index exactly once
    for batch in batches:
        assert len(batch) == 1 or lengths[batch].max() * len(batch) <= max_tokens


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_bucket_sampler_covers_all_within_budget_and_reshuffles(noise):
    sampler = BucketSampler(max_tokens=2048, length_noise=noise, seed=7)
    first, second = sampler.batches(LENGTHS, epoch=0), sampler.batches(LENGTHS, epoch=1)
    check_batches(first, LENGTHS, 2048)
    check_batches(second, LENGTHS, 2048)
    assert first != second
    assert BucketSampler(max_tokens=2048, length_noise=noise, seed=7).batches(LENGTHS) == first
    assert BucketSampler(max_tokens=2048, length_noise=noise, seed=8).batches(LENGTHS) != first


def test_bucket_sampler_packs_tightly():
    batches = BucketSampler(max_tokens=4096).batches(LENGTHS)
    padded = sum(LENGTHS[b].max() * len(b) for b in batches)
    assert padded < 1.05 * LENGTHS.sum()


def test_bucket_sampler_without_shuffle_is_sorted_and_respects_max_sentences():
    batches = BucketSampler(max_tokens=4096, max_sentences=50, shuffle=False).batches(LENGTHS)
    check_batches(batches, LENGTHS, 4096)
    flat = np.concatenate(batches)
    assert np.all(np.diff(LENGTHS[flat]) >= 0)
    assert max(len(b) for b in batches) == 50


@pytest.mark.parametrize("sampler", [BucketSampler(max_tokens=10, shuffle=False),
                                     BucketSampler(max_tokens=10), SequentialSampler(max_tokens=10)])
def test_oversized_sample_gets_its_own_batch(sampler):
    lengths = np.array([3, 3, 3, 25, 1, 1, 2])
    batches = sampler.batches(lengths)
    check_batches(batches, lengths, 10)
    assert [3] in batches


def test_sequential_sampler_keeps_file_order_greedily():
    batches = SequentialSampler(max_tokens=10).batches([3, 3, 3, 5, 1, 1, 4, 4])
    assert batches == [[0, 1, 2], [3, 4], [5, 6], [7]]
    check_batches(SequentialSampler(max_tokens=512, max_sentences=9).batches(LENGTHS), LENGTHS, 512)


# ---------------------------------------------------------------- data loader
def make_loader(num_workers=0):
    lengths = [i % 9 + 1 for i in range(200)]
    return DataLoader(num_workers, samples=list(range(200)), lengths=lengths,
                      sampler=BucketSampler(max_tokens=40, seed=3), collate_fn=torch.tensor)


def test_dataloader_start_skips_exactly_k_batches():
    loader = make_loader()
    full = list(loader.epoch_batches(2))
    assert len(full) == loader.num_batches(2) > 5
    resumed = list(loader.epoch_batches(2, start=5))
    assert len(resumed) == len(full) - 5
    assert all(torch.equal(a, b) for a, b in zip(full[5:], resumed))
    assert list(loader.epoch_batches(2, start=len(full))) == []


def test_dataloader_with_workers_matches_in_process():
    single = list(make_loader().epoch_batches(1))
    workers = list(make_loader(num_workers=2).epoch_batches(1))
    assert all(torch.equal(a, b) for a, b in zip(single, workers)) and len(single) == len(workers)
