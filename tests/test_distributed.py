"""torchrun on CPU (gloo): 2 ranks for a few steps equal 1 process with 2-fold accumulation."""
import os
import socket
import subprocess
import sys

import torch

from helpers import tiny_config, write_config
from paragen.cli import main
from paragen.trainers.checkpoint import load_checkpoint


def test_two_ranks_equal_one_process_with_accumulation(small_corpus, tmp_path):
    def config(save_dir, update_freq):
        cfg = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                          tmp_path / save_dir, max_steps=3, update_freq=update_freq)
        cfg["env"]["threads"] = 1
        return write_config(cfg, tmp_path / f"{save_dir}.yaml")

    assert main(["train", "--config", config("single", 2)]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "paragen.cli", "train",
         "--config", config("ddp", 1)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    single = load_checkpoint(str(tmp_path / "single" / "last.pt"))
    ddp = load_checkpoint(str(tmp_path / "ddp" / "last.pt"))
    assert single["trainer"]["step"] == ddp["trainer"]["step"] == 3
    for name, weight in single["model"].items():
        assert torch.allclose(weight, ddp["model"][name], atol=1e-5), name
