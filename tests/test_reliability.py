"""Training never loops on nothing, never loses updates to a crash, never mixes two runs, and
never stores a config it did not use."""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import tiny_config, write_config, write_pairs

from paragen.checkpoint import load_checkpoint, save_checkpoint
from paragen.cli import main
from paragen.errors import ConfigError, DataError
from paragen.tasks.build import build_task
from paragen.trainers.run_folder import RunLock


def _config(small_corpus, folder, **trainer):
    return tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"], folder,
                       **trainer)


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), lines
    return lines[-1]


@pytest.mark.parametrize("split", ["train", "valid"])
@pytest.mark.parametrize("content", ["", "\n\n\n"])
def test_a_split_without_samples_is_an_error_before_training(small_corpus, tmp_path, capsys,
                                                             split, content):
    """Empty files, or only blank lines skipped by `empty_lines: skip`: one error line at
    start-up, nothing trained or saved (it used to loop forever, or crash at validation)."""
    empty = {lang: tmp_path / f"empty.{lang}" for lang in ("de", "en")}
    for path in empty.values():
        path.write_text(content, encoding="utf-8")
    config = _config(small_corpus, tmp_path / "run")
    config["task"]["data"][split] = {"class": "ParallelTextDataset", "empty_lines": "skip",
                                     "path": {k: str(v) for k, v in empty.items()}}
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert f"task.data.{split}: the split has no samples" in _error_line(capsys)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_streamed_corpus_with_no_batch_is_an_error_not_a_loop(small_corpus, tmp_path):
    empty = {lang: tmp_path / f"empty.{lang}" for lang in ("de", "en")}
    for path in empty.values():
        path.write_text("", encoding="utf-8")
    config = _config(small_corpus, tmp_path / "run", max_steps=5)
    config["task"]["data"]["train"] = {"class": "StreamingParallelDataset",
                                       "path": {k: str(v) for k, v in empty.items()}}
    config["task"]["dataloader"]["train"] = {"class": "StreamingDataLoader"}
    with pytest.raises(DataError, match="yields no batch"):
        build_task(config).run()


def test_an_exception_between_checkpoints_keeps_the_updates(small_corpus, tmp_path):
    """A crash after step 7 (no validation yet) leaves last.pt at step 7, not nothing."""
    config = _config(small_corpus, tmp_path / "run", max_steps=20, validate_interval=100)
    task = build_task(copy.deepcopy(config))
    update = task.trainer._update
    calls = {"n": 0}

    def failing_update(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:
            raise RuntimeError("simulated failure in update 8")
        return update(*args, **kwargs)

    task.trainer._update = failing_update
    with pytest.raises(RuntimeError, match="simulated"):
        task.run()
    state = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    assert state["trainer"]["step"] == 7
    assert not (tmp_path / "run" / ".lock").exists()  # released on the way out
    # and the run resumes from there
    resumed = build_task(copy.deepcopy(config))
    resumed.run()
    assert load_checkpoint(str(tmp_path / "run" / "last.pt"))["trainer"]["step"] == 20


def test_two_trainers_on_one_folder_the_second_is_refused(small_corpus, tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / ".lock").write_text(json.dumps({"pid": holder.pid,
                                                  "host": os.uname().nodename}))
        path = write_config(_config(small_corpus, folder), tmp_path / "c.yaml")
        assert main(["train", "--config", path]) == 2
        line = _error_line(capsys)
        assert "is in use by another training run" in line and str(holder.pid) in line
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale, and the next run takes it over
    assert main(["train", "--config", path]) == 0
    assert not (folder / ".lock").exists()


def test_the_lock_refuses_its_own_process_twice(tmp_path):
    first = RunLock(str(tmp_path)).acquire()
    with pytest.raises(ConfigError, match="in use"):
        RunLock(str(tmp_path)).acquire()
    first.release()
    RunLock(str(tmp_path)).acquire().release()


def test_a_fresh_run_refuses_another_runs_folder_unless_overwrite(small_corpus, tmp_path,
                                                                  capsys):
    first = _config(small_corpus, tmp_path / "run", max_steps=4, validate_interval=2)
    assert main(["train", "--config", write_config(first, tmp_path / "a.yaml")]) == 0
    before = sorted(os.listdir(tmp_path / "run"))
    fresh = _config(small_corpus, tmp_path / "run", max_steps=2, resume=False)
    path = write_config(fresh, tmp_path / "b.yaml")
    assert main(["train", "--config", path]) == 2
    assert "holds another run's checkpoints" in _error_line(capsys)
    assert sorted(os.listdir(tmp_path / "run")) == before  # nothing pruned or replaced
    assert main(["train", "--config", path, "task.trainer.overwrite=true"]) == 0
    assert load_checkpoint(str(tmp_path / "run" / "last.pt"))["trainer"]["step"] == 2
    assert not (tmp_path / "run" / "checkpoint_4.pt").exists()


def test_orphaned_temp_checkpoints_are_removed(small_corpus, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".tmp-abc123.pt").write_bytes(b"half a checkpoint")
    config = _config(small_corpus, folder, max_steps=2)
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 0
    assert not list(folder.glob(".tmp-*"))


def test_resuming_with_a_new_learning_rate_applies_it(small_corpus, tmp_path, caplog):
    config = _config(small_corpus, tmp_path / "run", max_steps=4)
    config["task"]["trainer"]["lr_scheduler"] = {"class": "Constant"}
    build_task(copy.deepcopy(config)).run()
    config["task"]["trainer"]["max_steps"] = 6
    config["task"]["trainer"]["optimizer"]["lr"] = 1e-4
    task = build_task(copy.deepcopy(config))
    task.run()
    assert task.trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert "lr 0.003 → 0.0001" in caplog.text
    stored = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    assert stored["config"]["task"]["trainer"]["optimizer"]["lr"] == 1e-4
    assert stored["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4)


def test_rerunning_a_finished_run_neither_validates_nor_counts_again(small_corpus, tmp_path):
    config = _config(small_corpus, tmp_path / "run", max_steps=4, validate_interval=2,
                     early_stopping_patience=5)
    build_task(copy.deepcopy(config)).run()
    metrics = tmp_path / "run" / "metrics.jsonl"
    records = metrics.read_text()
    before = load_checkpoint(str(tmp_path / "run" / "last.pt"))["trainer"]
    build_task(copy.deepcopy(config)).run()
    assert metrics.read_text() == records
    after = load_checkpoint(str(tmp_path / "run" / "last.pt"))["trainer"]
    assert (after["step"], after["bad_validations"]) == (4, before["bad_validations"])
    assert after["last_validated_step"] == 4


def test_resuming_with_another_architecture_or_optimizer_is_one_clear_error(small_corpus,
                                                                            tmp_path, capsys):
    config = _config(small_corpus, tmp_path / "run", max_steps=2)
    assert main(["train", "--config", write_config(config, tmp_path / "a.yaml")]) == 0
    wider = copy.deepcopy(config)
    wider["task"]["model"]["d_model"] = 48
    wider["task"]["trainer"]["max_steps"] = 4
    assert main(["train", "--config", write_config(wider, tmp_path / "b.yaml")]) == 2
    assert "does not match the model" in _error_line(capsys)
    sgd = copy.deepcopy(config)
    sgd["task"]["trainer"]["optimizer"] = {"class": "SGD", "lr": 0.1}
    sgd["task"]["trainer"]["max_steps"] = 4
    assert main(["train", "--config", write_config(sgd, tmp_path / "c.yaml")]) == 2
    assert "trained with AdamW" in _error_line(capsys)


def test_a_second_stop_signal_stops_at_once(small_corpus, tmp_path):
    task = build_task(_config(small_corpus, tmp_path / "run"))
    trainer = task.trainer
    trainer._request_stop(2, None)
    assert trainer.stop_requested
    with pytest.raises(KeyboardInterrupt):
        trainer._request_stop(2, None)


@pytest.mark.parametrize("bad", ["", "tensor", "list"])
def test_files_that_are_not_checkpoints_give_one_line(small_corpus, tmp_path, capsys, bad):
    """A 0-byte file, a bare tensor, a list: `generate --model FILE` says what is wrong."""
    path = tmp_path / "model.pt"
    if bad == "":
        path.write_bytes(b"")
    else:
        save_checkpoint(torch.zeros(3) if bad == "tensor" else [1, 2], str(path))
    assert main(["generate", "--model", str(path)]) == 2
    line = _error_line(capsys)
    assert str(path) in line and ("not a paragen checkpoint" in line or
                                  "cannot load checkpoint" in line)


def test_trainer_values_out_of_range_are_config_errors(small_corpus, tmp_path, capsys):
    for key, value in (("update_freq", 0), ("max_steps", -1), ("log_interval", 0)):
        config = _config(small_corpus, tmp_path / "run", **{key: value})
        assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
        assert f"task.trainer.{key}: must be" in _error_line(capsys)


def test_text_dataset_as_a_translation_split_is_explained(small_corpus, tmp_path, capsys):
    pairs = write_pairs(tmp_path, {"de": ["ein Hund"], "en": ["a dog"]})
    config = _config(small_corpus, tmp_path / "run")
    config["task"]["data"]["train"] = {"class": "TextDataset", "path": pairs["de"]}
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert "TextDataset gives plain lines" in _error_line(capsys)
