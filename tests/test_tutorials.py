"""Every code block of docs/tutorials runs here, so the tutorials cannot drift from the code.

Each tutorial is one test. Its ```bash blocks run in order, in a fresh folder holding the
repository's `examples/` (a symbolic link), with `paragen` on the PATH and PARAGEN_DATA
pointing at a small slice of the real data (the first lines of each file), so that a
tutorial's commands run as written, only on less data. Budgets shrink as the rules in
`SMALLER` say (a tutorial's 1,000 updates become 12 here). Tutorials after the first start
from the data tutorial 1 prepares (`data/multi30k`), as their text says: it is prepared once
and copied into each tutorial's folder. A ```python block whose first line is `# file: PATH`
must match that file of the repository (the tutorial shows real code); any other ```python
block runs with the same interpreter, in the same folder.
"""
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("[0-9]*.md"))
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.M | re.S)
SLICE_LINES = {"multi30k": {"train": 200, "valid": 10, "test2016": 20},
               "sst2": {"train": 200, "dev": 20},
               "scitldr": {"train": 40, "dev": 3, "test": 3}}
SMALLER = [  # (pattern, replacement): budgets a CI machine can afford
    # 100 → 2, 200 → 4, ≥ 600 → 12: budgets keep their order (a resumed run trains on)
    (re.compile(r"max_steps[= ](\d+)"),
     lambda m: m.group(0).replace(m.group(1), str(min(12, max(2, int(m.group(1)) // 50))))),
    (re.compile(r"validate_interval[= ](\d+)"), lambda m: m.group(0).replace(m.group(1), "4")),
    (re.compile(r"--vocab-size \d+"), lambda m: "--vocab-size 600"),
    (re.compile(r"--limit \d+"), lambda m: "--limit 10"),
    (re.compile(r"--rounds \d+"), lambda m: "--rounds 1 --repeats 1"),
    (re.compile(r"--threads [\d ]+"), lambda m: "--threads 1 "),
    (re.compile(r"paragen train --config \S+"),  # checkpoints for average-checkpoints
     lambda m: m.group(0) + " task.trainer.log_interval=1 task.trainer.validate_interval=4"),
    (re.compile(r"--last \d+"), lambda m: "--last 2"),
]


def code_blocks(path: Path):
    return [(kind, body) for kind, body in BLOCK.findall(path.read_text(encoding="utf-8"))]


def smaller(command: str) -> str:
    for pattern, replace in SMALLER:
        command = pattern.sub(replace, command)
    return command


@pytest.fixture(scope="module")
def data_slice(tmp_path_factory, data_dir):
    """The first lines of each Multi30k, SST-2 and SciTLDR file, laid out as PARAGEN_DATA
    expects (a TSV keeps its header)."""
    root = tmp_path_factory.mktemp("tutorial-data")
    for corpus in ("multi30k", "sst2", "scitldr"):
        (root / corpus).mkdir()
        for source in sorted((data_dir / corpus).iterdir()):
            split = source.name.split(".")[0]
            lines = source.read_text(encoding="utf-8").splitlines()[:SLICE_LINES[corpus][split]]
            (root / corpus / source.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def prepared(data_slice, tmp_path_factory):
    """`data/multi30k` as tutorial 1 leaves it: the corpus and the SentencePiece model."""
    root = tmp_path_factory.mktemp("tutorial-prepared")
    run_block("bash", "paragen prepare-data --dataset multi30k --output data/multi30k\n"
              "paragen build-tokenizer --input data/multi30k/train.de data/multi30k/train.en "
              "--output data/multi30k/spm8k --vocab-size 8000", root, data_slice, "fixture", 0)
    return root / "data"


def run_block(kind: str, body: str, folder: Path, data_slice: Path, name: str, number: int):
    env = {**os.environ, "PARAGEN_DATA": str(data_slice), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}
    command = ["bash", "-euo", "pipefail", "-c", smaller(body)] if kind == "bash" \
        else [sys.executable, "-c", smaller(body)]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (f"{name} block {number} failed:\n{body}\n"
                                  f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def test_every_tutorial_has_code_and_every_block_a_known_kind():
    assert TUTORIALS, "docs/tutorials holds no numbered tutorial"
    for path in TUTORIALS:
        text = path.read_text(encoding="utf-8")
        assert code_blocks(path), path.name
        fences = re.findall(r"^```(\w*)$", text, re.M)
        opening = fences[0::2]
        assert set(opening) <= {"bash", "python", "text", "yaml"}, (path.name, opening)


# Longest first, so two workers finish together (seconds on one core of the CI machine).
EXPECTED_SECONDS = {"06-nat": 150, "08-serving-and-export": 147, "07-beyond-translation": 131,
                    "05-training": 108, "01-first-translation": 80, "04-your-own-model": 56}


@pytest.fixture(scope="module")
def tutorial_failures(data_slice, prepared, tmp_path_factory):
    """Every tutorial run once, two at a time (each block is single-threaded, and most of a
    block's time is a fresh `paragen` process starting): {tutorial: failure or None}."""
    def run(tutorial: Path):
        folder = tmp_path_factory.mktemp(tutorial.stem)
        try:
            run_tutorial(tutorial, folder, data_slice, prepared)
        except AssertionError as failure:
            return str(failure)
        return None

    order = sorted(TUTORIALS, key=lambda p: -EXPECTED_SECONDS.get(p.stem, 40))
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(order, pool.map(run, order)))


def run_tutorial(tutorial: Path, folder: Path, data_slice: Path, prepared: Path) -> None:
    (folder / "examples").symlink_to(ROOT / "examples")
    if not tutorial.name.startswith("01-"):
        shutil.copytree(prepared, folder / "data")
    for number, (kind, body) in enumerate(code_blocks(tutorial), 1):
        if kind == "python" and body.startswith("# file: "):
            path = body.splitlines()[0][len("# file: "):].strip()
            shown = body.split("\n", 1)[1]
            assert shown in (ROOT / path).read_text(encoding="utf-8"), \
                f"{tutorial.name} block {number} differs from {path}"
            continue
        run_block(kind, body, folder, data_slice, tutorial.name, number)


@pytest.mark.slow
@pytest.mark.parametrize("tutorial", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_as_written(tutorial, tutorial_failures):
    assert tutorial_failures[tutorial] is None, tutorial_failures[tutorial]
