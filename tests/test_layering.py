"""The package's import arrows point one way (docs/architecture.md, "Layers").

Read from the source with `ast`, so it holds for imports inside functions too: a lower layer
never reaches up, not even lazily.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "paragen"

# Lowest first. A module may import from its own layer and the ones below it.
LAYERS = [
    ("core", {"errors", "registry", "config", "compat", "env", "checkpoint", "model_folder",
              "interfaces", "files"}),
    ("data", {"tokenizers", "datasets", "samplers", "dataloaders", "cleaning"}),
    ("modules", {"modules", "encoders", "decoders"}),
    ("models", {"models"}),
    ("components", {"criteria", "search", "generators", "optim", "lr_schedulers", "metrics",
                    "evaluators", "trainers"}),
    ("tasks", {"tasks"}),
    ("delivery", {"exporting", "serving"}),
    ("commands", {"commands"}),
    ("entry", {"cli", "demo"}),
]
LEVEL = {name: level for level, (_, names) in enumerate(LAYERS) for name in names}


def unit_of(module: str) -> str:
    """`paragen.models.nat.glat` → `models`; `paragen.cli` → `cli`."""
    return module.split(".")[1]


def paragen_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("paragen."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("paragen."):
                yield node.lineno, node.module
            elif node.module == "paragen":
                for alias in node.names:
                    yield node.lineno, f"paragen.{alias.name}"


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = relative.parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1:
            yield path, ".".join(parts)


def test_every_unit_has_a_layer():
    units = {unit_of(name) for _, name in modules()}
    assert units <= set(LEVEL), f"add to LAYERS: {sorted(units - set(LEVEL))}"


@pytest.mark.parametrize("path,module", list(modules()), ids=lambda x: str(x).rsplit("/", 1)[-1])
def test_imports_point_down(path, module):
    own = LEVEL[unit_of(module)]
    upward = [f"{path.name}:{line} imports {target} ({LAYERS[LEVEL[unit_of(target)]][0]} is "
              f"above {LAYERS[own][0]})"
              for line, target in paragen_imports(path)
              if unit_of(target) in LEVEL and LEVEL[unit_of(target)] > own]
    assert not upward, "\n".join(upward)


def test_the_check_sees_upward_imports(tmp_path):
    """The rule above can fail: an upward import inside a function is found."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from paragen.tasks.build import build_task\n")
    assert list(paragen_imports(sample)) == [(2, "paragen.tasks.build")]
    assert LEVEL[unit_of("paragen.tasks.build")] > LEVEL[unit_of("paragen.models.nat.glat")]
