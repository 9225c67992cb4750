"""Every code block of docs/tutorials runs here, so the tutorials cannot drift from the code.

Each tutorial is one test. Its ```bash blocks run in order, in a fresh folder holding the
repository's `examples/` (a symbolic link), with `paragen` on the PATH and PARAGEN_DATA
pointing at a small slice of the real data (the first lines of each Multi30k file), so that a
tutorial's commands run as written, only on less data. Budgets shrink as the rules in
`SMALLER` say (a tutorial's 1,000 updates become 3 here). A ```python block whose first line
is `# file: PATH` must match that file of the repository (the tutorial shows real code); any
other ```python block runs with the same interpreter, in the same folder.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("[0-9]*.md"))
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.M | re.S)
SLICE_LINES = {"train": 300, "valid": 40, "test2016": 40}
SMALLER = [  # (pattern, replacement): budgets a CI machine can afford
    (re.compile(r"max_steps[= ](\d+)"), lambda m: m.group(0).replace(m.group(1), "3")),
    (re.compile(r"validate_interval[= ](\d+)"), lambda m: m.group(0).replace(m.group(1), "3")),
    (re.compile(r"--vocab-size \d+"), lambda m: "--vocab-size 600"),
    (re.compile(r"--limit \d+"), lambda m: "--limit 10"),
    (re.compile(r"--rounds \d+"), lambda m: "--rounds 1"),
    (re.compile(r"paragen train --config \S+"), lambda m: m.group(0) + " task.trainer.log_interval=1"),
]


def code_blocks(path: Path):
    return [(kind, body) for kind, body in BLOCK.findall(path.read_text(encoding="utf-8"))]


def smaller(command: str) -> str:
    for pattern, replace in SMALLER:
        command = pattern.sub(replace, command)
    return command


@pytest.fixture(scope="module")
def data_slice(tmp_path_factory, data_dir):
    """The first lines of each Multi30k file, laid out as PARAGEN_DATA expects."""
    root = tmp_path_factory.mktemp("tutorial-data")
    (root / "multi30k").mkdir()
    for source in sorted((data_dir / "multi30k").iterdir()):
        lines = source.read_text(encoding="utf-8").splitlines()[:SLICE_LINES[source.stem]]
        (root / "multi30k" / source.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_every_tutorial_has_code_and_every_block_a_known_kind():
    assert TUTORIALS, "docs/tutorials holds no numbered tutorial"
    for path in TUTORIALS:
        text = path.read_text(encoding="utf-8")
        assert code_blocks(path), path.name
        fences = re.findall(r"^```(\w*)$", text, re.M)
        opening = fences[0::2]
        assert set(opening) <= {"bash", "python", "text", "yaml"}, (path.name, opening)


@pytest.mark.slow
@pytest.mark.parametrize("tutorial", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_as_written(tutorial, data_slice, tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PARAGEN_DATA": str(data_slice), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}
    for number, (kind, body) in enumerate(code_blocks(tutorial), 1):
        if kind == "python" and body.startswith("# file: "):
            path = body.splitlines()[0][len("# file: "):].strip()
            shown = body.split("\n", 1)[1]
            assert shown in (ROOT / path).read_text(encoding="utf-8"), \
                f"{tutorial.name} block {number} differs from {path}"
            continue
        command = ["bash", "-euo", "pipefail", "-c", smaller(body)] if kind == "bash" \
            else [sys.executable, "-c", body]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (f"{tutorial.name} block {number} failed:\n{body}\n"
                                      f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
