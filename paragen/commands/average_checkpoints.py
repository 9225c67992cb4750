"""`paragen average-checkpoints --dir D --last 5 --output D/average.pt` (or --inputs a.pt b.pt).

Only step checkpoints (`checkpoint_<step>.pt`) are picked by --last, never `last.pt`/`best.pt`
copies or an earlier average, so no model is counted twice. `--dtype fp16` stores the
weights at half size (to ship a model; they load into the fp32 model unchanged in shape);
averaging a single `--inputs` file that way just makes a half-size copy.
"""
from __future__ import annotations

import argparse
import os
import re

import torch

from paragen.errors import ConfigError
from paragen.files import check_output_path
from paragen.checkpoint import average_states, load_checkpoint, save_checkpoint

STEP_CHECKPOINT = re.compile(r"checkpoint_(\d+)\.pt$")
STORAGE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inputs", nargs="+", help="checkpoint files to average")
    parser.add_argument("--dir", help="folder of checkpoint_<step>.pt files")
    parser.add_argument("--last", type=int, default=5, help="with --dir: average the newest N")
    parser.add_argument("--output", required=True, help="where to write the averaged checkpoint")
    parser.add_argument("--dtype", choices=sorted(STORAGE_DTYPES), default="fp32",
                        help="floating-point type the weights are stored in")


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
    if args.last < 1:
        raise ConfigError(f"--last {args.last}: must be at least 1")
    paths = args.inputs or select_checkpoints(args.dir, args.last)
    check_output_path(args.output, paths)  # never over one of its own inputs
    newest = load_checkpoint(paths[-1])
    dtype = STORAGE_DTYPES[args.dtype]
    weights = {k: v.to(dtype) if v.is_floating_point() else v
               for k, v in average_states(paths).items()}
    state = {"model": weights, "config": newest["config"],
             "averaged_from": [os.path.basename(p) for p in paths]}
    save_checkpoint(state, args.output)
    print(f"averaged {len(paths)} checkpoints ({', '.join(state['averaged_from'])}) "
          f"into {args.output}")
    return 0
