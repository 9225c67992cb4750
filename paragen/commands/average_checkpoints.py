"""`paragen average-checkpoints --dir D --last 5 --output D/average.pt` (or --inputs a.pt b.pt).

Only step checkpoints (`checkpoint_<step>.pt`) are picked by --last, never `last.pt`/`best.pt`
copies or an earlier average, so no model is counted twice.
"""
from __future__ import annotations

import argparse
import os
import re

from paragen.errors import ConfigError
from paragen.trainers.checkpoint import average_states, load_checkpoint, save_checkpoint

STEP_CHECKPOINT = re.compile(r"checkpoint_(\d+)\.pt$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inputs", nargs="+", help="checkpoint files to average")
    parser.add_argument("--dir", help="folder of checkpoint_<step>.pt files")
    parser.add_argument("--last", type=int, default=5, help="with --dir: average the newest N")
    parser.add_argument("--output", required=True, help="where to write the averaged checkpoint")


def select_checkpoints(folder: str, last: int) -> list:
    if not os.path.isdir(folder):
        raise ConfigError(f"--dir {folder}: not a folder")
    found = sorted((int(m.group(1)), name) for name in os.listdir(folder)
                   if (m := STEP_CHECKPOINT.fullmatch(name)))
    if not found:
        raise ConfigError(f"--dir {folder}: no checkpoint_<step>.pt files")
    return [os.path.join(folder, name) for _, name in found[-last:]]


def run(args: argparse.Namespace) -> int:
    if bool(args.inputs) == bool(args.dir):
        raise ConfigError("give either --inputs or --dir")
    paths = args.inputs or select_checkpoints(args.dir, args.last)
    newest = load_checkpoint(paths[-1])
    state = {"model": average_states(paths), "config": newest["config"],
             "averaged_from": [os.path.basename(p) for p in paths]}
    save_checkpoint(state, args.output)
    print(f"averaged {len(paths)} checkpoints ({', '.join(state['averaged_from'])}) "
          f"into {args.output}")
    return 0
