"""`paragen binarize` and memory-mapped training data."""
import numpy as np
import pytest

from helpers import tiny_config
from paragen.cli import main
from paragen.tasks.build import build_task
from paragen.datasets import BinarizedParallelDataset, read_lines
from paragen.tokenizers import SentencePieceTokenizer


def test_binarized_ids_equal_tokenizer_output_and_train(small_corpus, tmp_path, capsys,
                                                        monkeypatch):
    from paragen.commands import binarize

    monkeypatch.setattr(binarize, "CHUNK_LINES", 7)  # many chunks, a short last one
    train = small_corpus["train"]
    assert main(["binarize", "--tokenizer", small_corpus["spm"], "--input", train["de"],
                 train["en"], "--output-dir", str(tmp_path / "bin")]) == 0
    dataset = BinarizedParallelDataset({"de": str(tmp_path / "bin" / "train.de"),
                                        "en": str(tmp_path / "bin" / "train.en")})
    tokenizer = SentencePieceTokenizer(small_corpus["spm"])
    lines = read_lines(train["en"])
    assert len(dataset) == len(lines) == 300
    array = dataset.token_array("en")
    for i in (0, 17, 299):
        assert array[i].tolist() == tokenizer.encode(lines[i])
    assert array.tokens.dtype == np.uint16  # 400-piece vocabulary fits

    config = tiny_config(train, small_corpus["valid"], small_corpus["spm"], tmp_path / "run",
                         max_steps=4)
    config["task"]["data"]["train"] = {"class": "BinarizedParallelDataset",
                                       "path": {"de": str(tmp_path / "bin" / "train.de"),
                                                "en": str(tmp_path / "bin" / "train.en")}}
    task = build_task(config)
    text_task = build_task(tiny_config(train, small_corpus["valid"], small_corpus["spm"],
                                       tmp_path / "run2"))
    batch = task.collate([3, 5], task.splits["train"])
    text_batch = text_task.collate([3, 5], text_task.splits["train"])
    for key in ("src", "prev_tokens", "target"):
        assert batch[key].tolist() == text_batch[key].tolist()
    assert task.run()["valid.loss"] > 0


def test_binarize_reports_bad_bytes_with_line(small_corpus, tmp_path, capsys):
    bad = tmp_path / "bad.de"
    bad.write_bytes(b"gut\n\xfe schlecht\n")
    assert main(["binarize", "--tokenizer", small_corpus["spm"], "--input", str(bad),
                 "--output-dir", str(tmp_path / "bin")]) == 2
    assert "bad.de:2: not valid UTF-8" in capsys.readouterr().err
    assert not list((tmp_path / "bin").glob("bad.de*"))  # no partial or temp files


def test_misaligned_binarized_files_are_rejected(small_corpus, tmp_path):
    from paragen.errors import DataError

    short = tmp_path / "short.en"
    short.write_text("a b\nc\n")
    assert main(["binarize", "--tokenizer", small_corpus["spm"], "--input",
                 small_corpus["train"]["de"], str(short), "--output-dir", str(tmp_path)]) == 0
    with pytest.raises(DataError, match="not aligned"):
        BinarizedParallelDataset({"de": str(tmp_path / "train.de"),
                                  "en": str(tmp_path / "short.en")})
