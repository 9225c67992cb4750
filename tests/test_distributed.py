"""torchrun on CPU (gloo): 2 ranks equal 1 process with 2-fold accumulation, including an
epoch whose last update has fewer batches than ranks."""
import pytest
import torch
from helpers import tiny_config, torchrun_train, write_config

from paragen.checkpoint import load_checkpoint
from paragen.cli import main
from paragen.tasks.build import build_task


def _odd_epoch_budget(small_corpus, tmp_path) -> int:
    """A max_tokens for which one epoch has an odd number of batches."""
    for max_tokens in range(600, 900, 10):
        cfg = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                          tmp_path / "probe")
        cfg["task"]["dataloader"]["train"]["sampler"]["max_tokens"] = max_tokens
        if build_task(cfg).train_loader.num_batches(0) % 2:
            return max_tokens
    raise AssertionError("no odd batch count found")


@pytest.mark.slow
@pytest.mark.parametrize("limit", [{"max_steps": 3}, {"max_epochs": 1}])
def test_two_ranks_equal_one_process_with_accumulation(limit, small_corpus, tmp_path):
    max_tokens = _odd_epoch_budget(small_corpus, tmp_path) if "max_epochs" in limit else 600

    def config(save_dir, update_freq):
        cfg = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                          tmp_path / save_dir, update_freq=update_freq,
                          **{"max_steps": 0, **limit})
        cfg["task"]["dataloader"]["train"]["sampler"]["max_tokens"] = max_tokens
        cfg["env"]["threads"] = 1
        return write_config(cfg, tmp_path / f"{save_dir}.yaml")

    assert main(["train", "--config", config("single", 2)]) == 0
    result = torchrun_train(config("ddp", 1))
    assert result.returncode == 0, result.stderr[-3000:]
    single = load_checkpoint(str(tmp_path / "single" / "last.pt"))
    ddp = load_checkpoint(str(tmp_path / "ddp" / "last.pt"))
    assert single["trainer"]["step"] == ddp["trainer"]["step"] >= 3
    for name, weight in single["model"].items():
        assert torch.allclose(weight, ddp["model"][name], atol=1e-5), name
