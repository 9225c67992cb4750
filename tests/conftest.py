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
