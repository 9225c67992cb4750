"""`paragen train --config cfg.yaml [--lib my_lib] [--task.trainer.max_steps 100 | key=value ...]`."""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional

from paragen.config import load_config
from paragen.tasks.build import build_task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML config with task: and env:")
    parser.add_argument("--lib", action="append", default=[],
                        help="plug-in module or folder to import (repeatable, or comma-separated)")
    parser.set_defaults(accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    run_config(args.config, args.lib, args.overrides, mode="train")
    return 0


def run_config(config_path: Optional[str], libs: List[str], overrides: List[str],
               mode: Optional[str] = None, config: Optional[Dict[str, Any]] = None,
               base_dir: str = ".") -> Dict[str, Any]:
    """config → env → task.build() → task.run(): the whole data flow in four lines."""
    config = config if config is not None else load_config(config_path, overrides)
    if mode:
        config["task"]["mode"] = mode
    task = build_task(config, libs, base_dir)
    result = task.run()
    if task.env.is_main:
        print(json.dumps({k: v for k, v in result.items() if isinstance(v, (int, float))}))
    return result
