import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """Real data lives outside the repo: $PARAGEN_DATA, else ../shared/data beside the checkout."""
    return Path(os.environ.get("PARAGEN_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    assert (path / "multi30k" / "train.de").is_file(), f"Multi30k not found under {path}"
    return path
