"""Config files and command-line overrides.

A config is YAML with two top-level keys, as in ParaGen: `task:` (what to build and run) and
`env:` (device, precision, seed, threads, logging). Overrides use dotted paths, in either of
the two spellings users know:

    --task.trainer.max_steps 100        (ParaGen / argparse style)
    task.trainer.max_steps=100          (Hydra / OmegaConf style)

Values are parsed with `yaml.safe_load`, so `100` is an int, `true` a bool and `[0.9, 0.98]`
a list; nothing is ever evaluated as Python.
"""
from __future__ import annotations

import copy
import logging
import os
import re
from typing import Any, Dict, Iterable, List, Tuple

import yaml

from paragen.compat import from_paragen
from paragen.errors import ConfigError

_DEFINE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_yaml(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: config file not found")
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(config).__name__}")
    size = _expanded_size(config, {}, set())
    if size > MAX_CONFIG_VALUES:
        raise ConfigError(f"{path}: expands to more than {MAX_CONFIG_VALUES:,} values (YAML "
                          f"aliases referring to aliases?); real configs hold hundreds")
    return config


MAX_CONFIG_VALUES = 100_000  # real configs hold hundreds; an alias bomb holds billions


def _expanded_size(node: Any, sizes: Dict[int, int], open_nodes: set) -> int:
    """How many values `node` holds once every alias is copied out, counted without copying
    (each shared node once), so a "billion laughs" file is refused in milliseconds."""
    if not isinstance(node, (dict, list)):
        return 1
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise ConfigError("the config refers to itself through a YAML alias")
    open_nodes.add(key)
    children = node.values() if isinstance(node, dict) else node
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_nodes)
        if total > MAX_CONFIG_VALUES:
            break
    open_nodes.discard(key)
    sizes[key] = total
    return total


def parse_value(text: str) -> Any:
    """A command-line value as YAML (`100` → int, `1e-3` → str kept for float coercion)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(args: Iterable[str]) -> List[Tuple[str, Any]]:
    """`['--a.b', '1', 'c.d=x', '--e.f=2']` → `[('a.b', 1), ('c.d', 'x'), ('e.f', 2)]`."""
    args = list(args)
    overrides: List[Tuple[str, Any]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            key = arg[2:]
            if "=" in key:
                key, value = key.split("=", 1)
            elif i + 1 < len(args) and not _looks_like_key(args[i + 1]):
                value = args[i + 1]
                i += 1
            else:
                raise ConfigError(f"{arg}: override needs a value (--{key} VALUE or {key}=VALUE)")
        elif "=" in arg:
            key, value = arg.split("=", 1)
        else:
            raise ConfigError(f"{arg!r}: expected an override like --task.trainer.max_steps 100 "
                              f"or task.trainer.max_steps=100")
        if not key or not all(key.split(".")):
            raise ConfigError(f"{arg!r}: empty key in override")
        overrides.append((key, parse_value(value)))
        i += 1
    return overrides


def _looks_like_key(arg: str) -> bool:
    return arg.startswith("--") and len(arg) > 2 and not _is_number(arg)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def apply_overrides(config: Dict[str, Any], overrides: Iterable[Tuple[str, Any]]) -> Dict[str, Any]:
    config = copy.deepcopy(config)
    for key, value in overrides:
        node = config
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: {'.'.join(parts[:depth + 1])} is a value "
                                  f"({child!r}), not a section")
            node = child
        node[parts[-1]] = value
    return config


def substitute_defines(config: Dict[str, Any]) -> Dict[str, Any]:
    """ParaGen's `define:` block: `${name}` in any string (lists included) becomes its value."""
    defines = config.pop("define", None) or {}
    if not defines:
        return config

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            whole = _DEFINE.fullmatch(node)
            if whole and whole.group(1) in defines:
                return defines[whole.group(1)]  # keep the define's type (int, list, ...)
            return _DEFINE.sub(lambda m: str(defines.get(m.group(1), m.group(0))), node)
        return node

    return walk(config)


def load_config(path: str | None, overrides: Iterable[str] = ()) -> Dict[str, Any]:
    """Read a YAML config, apply `define:` substitutions and command-line overrides."""
    config = load_yaml(path) if path else {}
    parsed = parse_overrides(overrides)
    # Overrides of `define.*` must take effect, so apply those before substitution.
    config = apply_overrides(config, [(k, v) for k, v in parsed if k.startswith("define.")])
    config = substitute_defines(config)
    config = apply_overrides(config, [(k, v) for k, v in parsed if not k.startswith("define.")])
    config = from_paragen(config)
    unknown = set(config) - {"task", "env"}
    if unknown:
        raise ConfigError(f"{path or 'config'}: unknown top-level key(s) {sorted(unknown)}; "
                          f"expected 'task' and 'env'")
    if "task" not in config:
        raise ConfigError(f"{path or 'config'}: missing top-level 'task' section")
    return config


def dump_config(config: Dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)


def migrate_model_config(model: Dict[str, Any], path: str = "task.model") -> Dict[str, Any]:
    """Rewrite a model config written for an older release into today's spelling, in place,
    with one notice. Covers configs and the configs stored in older checkpoints alike.

    - A `GLAT` with `ctc_upsample: k` became its own class: `CTCNAT` with `upsample: k`
      (and `ctc_max_slots` → `max_slots`).
    """
    if str(model.get("class", "")).lower() == "glat" and "ctc_upsample" in model:
        upsample = model.pop("ctc_upsample")
        max_slots = model.pop("ctc_max_slots", 0)
        if upsample:
            for length_key in ("length_prediction", "max_length_offset"):  # none in CTCNAT
                model.pop(length_key, None)
            model.update({"class": "CTCNAT", "upsample": upsample, "max_slots": max_slots})
            logging.getLogger("paragen").warning(
                "%s: GLAT with ctc_upsample is now class CTCNAT with upsample: %s (and "
                "max_slots for ctc_max_slots); read as such", path, upsample)
    return model
