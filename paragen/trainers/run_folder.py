"""The training run's folder (`save_dir`): one run at a time, and never another run's files.

Two trainers writing one folder would interleave `best.pt`/`last.pt` from different models;
a fresh run started in an old run's folder would prune the old run's checkpoints by step
number and mix two `metrics.jsonl` histories. So a run holds `save_dir/.lock` (its pid and
host) while it trains, and a fresh run refuses a folder that holds another run's
checkpoints unless told to overwrite them (as `git clone` refuses a non-empty folder).
"""
from __future__ import annotations

import glob
import json
import logging
import os
import socket
from typing import Optional

from paragen.errors import ConfigError

logger = logging.getLogger("paragen")

LOCK_NAME = ".lock"
RUN_FILES = ("last.pt", "best.pt", "average.pt", "metrics.jsonl")


def holds_a_run(folder: str) -> bool:
    """True when `folder` has checkpoints or a training log of some run."""
    return any(os.path.exists(os.path.join(folder, name)) for name in RUN_FILES) or bool(
        glob.glob(os.path.join(glob.escape(folder), "checkpoint_*.pt")))


def clear_run(folder: str) -> None:
    """Delete a previous run's checkpoints and log (`overwrite: true`); tokenizers stay."""
    for path in [os.path.join(folder, name) for name in RUN_FILES] + glob.glob(
            os.path.join(glob.escape(folder), "checkpoint_*.pt")):
        if os.path.exists(path):
            os.remove(path)
    logger.warning("%s: overwrite: removed the previous run's checkpoints and log", folder)


def remove_orphaned_temp_files(folder: str) -> None:
    """`.tmp-*.pt` files are checkpoints a killed process was writing; never complete."""
    for path in glob.glob(os.path.join(glob.escape(folder), ".tmp-*.pt")):
        try:
            os.remove(path)
            logger.info("removed %s, a checkpoint left half-written by a killed run", path)
        except OSError:
            pass


class RunLock:
    """`save_dir/.lock` while a run trains; a lock whose process is gone is taken over."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, LOCK_NAME)
        self.held = False

    def acquire(self) -> "RunLock":
        owner = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and _alive(holder):
                    raise ConfigError(
                        f"task.trainer.save_dir: {os.path.dirname(self.path)} is in use by "
                        f"another training run (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, lock file {self.path}); use another save_dir, "
                        f"or remove the lock file if that process is gone") from None
                logger.warning("%s: taking over the lock of a run that is gone (%s)",
                               self.path, holder)
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(owner, f)
            self.held = True
            return self
        raise ConfigError(f"{self.path}: could not take the run lock (another run raced us)")

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def _holder(self) -> Optional[dict]:
        try:
            with open(self.path, encoding="utf-8") as f:
                holder = json.load(f)
            return holder if isinstance(holder, dict) else None
        except (OSError, ValueError):
            return None  # unreadable: treated as stale


def _alive(holder: dict) -> bool:
    """Whether the lock's process still runs (only knowable on the same host)."""
    if holder.get("host") != socket.gethostname():
        return True  # another machine's run (a shared file system): assume it is alive
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_metrics_log(path: str):
    """Append to a JSON-lines log; a line cut short by a crash (kill -9) is ended first, so
    the next record starts on its own line."""
    cut_short = False
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        with open(path, "rb") as existing:
            existing.seek(-1, os.SEEK_END)
            cut_short = existing.read(1) != b"\n"
    log = open(path, "a", encoding="utf-8")
    if cut_short:
        log.write("\n")
    return log


def open_board(folder: str):
    """A TensorBoard writer (the optional `tensorboard` package); resuming appends to the
    same folder, and TensorBoard joins the event files by step."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ConfigError("task.trainer.tensorboard: needs the tensorboard package "
                          "(pip install 'paragen[tensorboard]')") from err
    return SummaryWriter(folder)
