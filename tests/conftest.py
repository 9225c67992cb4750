import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers.py


def shared_data_dir() -> Path:
    """Real data lives outside the repo: $PARAGEN_DATA, else ../shared/data beside the checkout."""
    return Path(os.environ.get("PARAGEN_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """In-process commands (bench) set torch's thread count; a later test must not inherit
    it: with 1 thread instead of 2 the GLAT-CTC overfit test memorised 28 pairs, not 47."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data. Missing, it fails under CI (CI=true), where it must be present, and
    skips elsewhere, with one message saying where it was looked for and how to point at it."""
    path = shared_data_dir()
    if not (path / "multi30k" / "train.de").is_file():
        message = (f"Multi30k not found under {path}: set PARAGEN_DATA to the folder holding "
                   f"multi30k/ (see ../shared/data/README.md)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def tiny_model(small_corpus, tmp_path_factory) -> Path:
    """A tiny AR model trained for 5 steps through `paragen train`: a model folder for tests
    that only read it (copy it before changing it)."""
    from helpers import tiny_config, write_config

    from paragen.cli import main

    root = tmp_path_factory.mktemp("tiny-model")
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         root / "run", max_steps=5)
    assert main(["train", "--config", write_config(config, root / "c.yaml")]) == 0
    return root / "run"


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory, data_dir):
    """300 training / 40 validation pairs of Multi30k and a 400-piece joint SentencePiece model."""
    from helpers import write_slice

    from paragen.tokenizers import SentencePieceTokenizer

    root = tmp_path_factory.mktemp("corpus")
    train = write_slice(data_dir, root, 300, "train")
    valid = write_slice(data_dir, root, 40, "valid")
    model = SentencePieceTokenizer.learn([train["de"], train["en"]], str(root / "spm"),
                                         vocab_size=400)
    return {"train": train, "valid": valid, "spm": model, "root": root}


@pytest.fixture(scope="session")
def sst2(tmp_path_factory):
    """300 train / 80 dev rows of SST-2 (as TSV, header kept) and a 300-piece tokenizer."""
    from paragen.cli import main

    source = shared_data_dir() / "sst2"
    if not (source / "train.tsv").is_file():
        message = f"SST-2 not found under {source}: set PARAGEN_DATA (see ../shared/data)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("sst2")
    paths = {}
    for split, rows in (("train", 300), ("dev", 80)):
        lines = (source / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        paths[split] = str(root / f"{split}.tsv")
        Path(paths[split]).write_text("\n".join(lines[:rows + 1]) + "\n", encoding="utf-8")
    assert main(["build-tokenizer", "--input", paths["train"], "--column", "sentence",
                 "--output", str(root / "spm"), "--vocab-size", "300"]) == 0
    return {**paths, "spm": str(root / "spm.model"), "root": root}


@pytest.fixture(scope="session")
def tiny_classifier(sst2) -> Path:
    """A tiny SST-2 classifier trained for 60 steps through `paragen train`: a model folder
    for tests that only read it (copy it before changing it)."""
    from helpers import classifier_config, write_config

    from paragen.cli import main

    save_dir = sst2["root"] / "run"
    path = write_config(classifier_config(sst2, save_dir), sst2["root"] / "c.yaml")
    assert main(["train", "--config", path]) == 0
    return save_dir


@pytest.fixture(scope="session")
def tiny_pair_regressor(sst2) -> Path:
    """A sentence-pair regressor (two SST-2 sentences, segment ids, max_length 24; SST-2's
    0/1 labels as values) trained for 4 steps: a pair task whose inputs get truncated."""
    from helpers import classifier_config, write_config

    from paragen.cli import main

    root = sst2["root"] / "pairs"
    root.mkdir()
    header, *rows = Path(sst2["train"]).read_text(encoding="utf-8").splitlines()
    cells = [row.split("\t") for row in rows[:120]]
    pairs = [f"{a}\t{cells[i - 1][0]}\t{label}" for i, (a, label) in enumerate(cells)]
    data = root / "pairs.tsv"
    data.write_text("first\tsecond\tlabel\n" + "\n".join(pairs) + "\n", encoding="utf-8")
    config = classifier_config(sst2, root / "run", text=["first", "second"],
                               pair_encoding="segments", max_length=24,
                               **{"class": "SequenceRegressionTask"})
    config["task"]["data"] = {"train": {"class": "TsvDataset", "path": str(data)},
                              "valid": {"class": "TsvDataset", "path": str(data)}}
    config["task"]["trainer"]["max_steps"] = 4
    assert main(["train", "--config", write_config(config, root / "c.yaml")]) == 0
    return root / "run"
