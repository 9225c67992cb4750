"""The source and target tokenizers a config's `tokenizer:` section describes."""
from __future__ import annotations

import os
from typing import Any, Dict, Tuple

from paragen.errors import ConfigError
from paragen.registry import build


def build_tokenizers(config: Dict[str, Any], src: str, tgt: str, base_dir: str = ".",
                     path: str = "task.tokenizer") -> Tuple[Any, Any]:
    """(source tokenizer, target tokenizer): one joint tokenizer (a mapping with `class`), or
    one per language (`{de: {...}, en: {...}}`). A `model` file is relative to `base_dir`,
    the model folder when a trained model is loaded."""
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping, got {config!r}")
    if "class" in config:
        joint = _tokenizer(config, path, base_dir)
        return joint, joint
    missing = [lang for lang in (src, tgt) if lang not in config]
    if missing:
        raise ConfigError(f"{path}: give one tokenizer (with 'class') or one per language; "
                          f"missing {missing}")
    return (_tokenizer(config[src], f"{path}.{src}", base_dir),
            _tokenizer(config[tgt], f"{path}.{tgt}", base_dir))


def _tokenizer(config: Dict[str, Any], path: str, base_dir: str):
    config = dict(config)
    if "model" in config:
        config["model"] = os.path.join(base_dir, config["model"])
    return build("tokenizer", config, path)
