"""The runtime environment: device, precision, seed, threads, logging and plug-in libraries.

Built once from the config's `env:` section and passed explicitly to whoever needs it (no
process-wide singleton), so tests can build several tasks in one process.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import random
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np
import torch

from paragen.errors import ConfigError
from paragen.registry import check_arguments

logger = logging.getLogger("paragen")

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Environment:
    device: str = "auto"
    precision: str = "fp32"
    seed: int = 1
    threads: int = 0
    no_progress_bar: bool = False
    log_level: str = "INFO"
    custom_libs: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            kind = torch.device(self.device).type
        except (RuntimeError, ValueError):
            raise ConfigError(f"env.device: {self.device!r} is not a device; use auto, cpu, cuda "
                              f"or cuda:N") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"env.device: {self.device} asked for, but no CUDA device is "
                              f"available here; use cpu (or auto)")
        if kind not in ("cpu", "cuda"):
            raise ConfigError(f"env.device: {self.device!r}: paragen runs on cpu or cuda")
        for name, value in (("threads", self.threads), ("seed", self.seed)):
            if value < 0:
                raise ConfigError(f"env.{name}: must be ≥ 0, got {value}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"env.precision: expected one of {list(PRECISIONS)}, "
                              f"got {self.precision!r}")
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            raise ConfigError("env.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def amp_dtype(self):
        return PRECISIONS[self.precision]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for forward passes; a no-op in fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.split(":")[0], dtype=self.amp_dtype)

    def setup(self) -> "Environment":
        logging.basicConfig(
            level=self.log_level if self.is_main else "WARNING",
            format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
            datefmt="%H:%M:%S", stream=sys.stderr)
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        if self.world_size > 1:
            self._init_distributed()
        seed_everything(self.seed)
        import_libs(self.custom_libs)
        return self


    def _init_distributed(self) -> None:
        """torchrun sets RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR: one process per device."""
        import torch.distributed as dist

        if self.device.startswith("cuda"):
            self.device = f"cuda:{self.local_rank}"
            torch.cuda.set_device(self.local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.startswith("cuda") else "gloo")


def build_env(config: Dict[str, Any] | None) -> Environment:
    config = dict(config or {})
    libs = config.get("custom_libs", [])
    if isinstance(libs, str):
        config["custom_libs"] = [p for p in libs.split(",") if p]
    return Environment(**check_arguments(Environment, config, "env"))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def import_libs(libs: List[str]) -> None:
    """Import plug-in libraries (`--lib my_lib` or `--lib path/to/my_lib`) so they register classes.

    A path is imported from its parent folder, which is put on `sys.path`; a dotted name is
    imported as is. ParaGen required users to set PYTHONPATH for this; we do not.
    """
    for lib in libs:
        path = lib.rstrip("/")
        if path.endswith(".py") or os.sep in path or os.path.isdir(path):
            module_path = path[:-3] if path.endswith(".py") else path
            parent, name = os.path.split(os.path.abspath(module_path))
            if not (os.path.isdir(module_path) or os.path.isfile(module_path + ".py")):
                raise ConfigError(f"--lib {lib}: no such module file or package folder")
            if parent not in sys.path:
                sys.path.insert(0, parent)
        else:
            name = path
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"--lib {lib}: cannot import {name!r} ({err})") from None
        except (Exception, SystemExit) as err:  # a plug-in must not end the command
            raise ConfigError(f"--lib {lib}: importing {name!r} failed: "
                              f"{type(err).__name__}: {err}") from None
        logger.info("imported plug-in library %s", lib)


def import_extra(module: str, extra: str, needed_by: str):
    """Import an optional dependency, or fail with one `ConfigError` naming the extra that
    installs it: a config may name a class whose heavy dependency (transformers ...) is not
    installed, and the user should learn the fix, not read an import traceback."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"{needed_by} needs the {extra} extra ({err}): "
                          f"pip install 'paragen[{extra}]'") from None
