"""Streaming data: lazy shards, every line exactly once across ranks × workers, training."""
import pytest
from helpers import tiny_config, torchrun_train, write_config

from paragen.checkpoint import load_checkpoint
from paragen.cli import main
from paragen.dataloaders import StreamingDataLoader
from paragen.datasets import StreamingParallelDataset, read_lines
from paragen.errors import DataError
from paragen.tasks.build import build_task

SHARD_SIZES = (110, 97, 93)  # 300 lines, uneven shards and uneven reader shares


@pytest.fixture(scope="module")
def shards(small_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    lines = {lang: read_lines(path) for lang, path in small_corpus["train"].items()}
    start = 0
    for i, size in enumerate(SHARD_SIZES):
        for lang in ("de", "en"):
            (root / f"train.{i:02d}.{lang}").write_text(
                "\n".join(lines[lang][start:start + size]) + "\n", encoding="utf-8")
        start += size
    return {"de": str(root / "train.*.de"), "en": str(root / "train.*.en"), "lines": lines}


def streaming_config(small_corpus, shards, save_dir, **trainer):
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         save_dir, **trainer)
    config["task"]["data"]["train"] = {"class": "StreamingParallelDataset",
                                       "path": {"de": shards["de"], "en": shards["en"]}}
    config["task"]["dataloader"]["train"] = {"class": "StreamingDataLoader", "max_tokens": 600,
                                             "buffer_size": 40, "num_workers": 2}
    return config


def test_every_line_once_per_epoch_across_two_ranks_and_two_workers(small_corpus, shards,
                                                                      tmp_path):
    task = build_task(streaming_config(small_corpus, shards, tmp_path / "run", max_steps=1))
    dataset = task.splits["train"]["streaming"]
    seen, per_rank = [], []
    for rank in range(2):
        loader = StreamingDataLoader(max_tokens=600, buffer_size=40, num_workers=2,
                                     dataset=dataset, encode=task.encode,
                                     collate_fn=task.collate, src="de", tgt="en", rank=rank,
                                     world_size=2)
        batches = list(loader.epoch_batches(epoch=0))
        numbers = [n for b in batches for n in b["line_numbers"].tolist()]
        per_rank.append(len(numbers))
        seen += numbers
        # the ids in a batch are those of the lines it names
        first = batches[0]
        line = first["line_numbers"][0].item()
        expected = task.src_tokenizer.encode_batch([shards["lines"]["de"][line]])[0]
        assert first["src"][0][:len(expected)].tolist() == expected
        # batches are a pure function of (seed, epoch, rank, worker): resume can skip some
        again = list(loader.epoch_batches(epoch=0, start=3))
        assert [b["line_numbers"].tolist() for b in again] == \
               [b["line_numbers"].tolist() for b in batches[3:]]
    assert sorted(seen) == list(range(sum(SHARD_SIZES)))
    assert per_rank == [150, 150]


@pytest.mark.slow
def test_streaming_training_and_ddp_ranks_finish_together(small_corpus, shards, tmp_path):
    assert main(["train", "--config", write_config(
        streaming_config(small_corpus, shards, tmp_path / "single", max_steps=4),
        tmp_path / "single.yaml")]) == 0
    assert load_checkpoint(str(tmp_path / "single" / "last.pt"))["trainer"]["step"] == 4

    # One epoch on 2 ranks: the ranks' streams differ in batch count, yet both must end
    # the epoch at the same update (no hang, no lost batch).
    config = streaming_config(small_corpus, shards, tmp_path / "ddp", max_steps=0, max_epochs=1)
    config["task"]["dataloader"]["train"]["max_tokens"] = 450
    config["env"]["threads"] = 1
    result = torchrun_train(write_config(config, tmp_path / "ddp.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(str(tmp_path / "ddp" / "last.pt"))["trainer"]
    assert state["epoch"] == 1 and state["step"] > 0


def test_misaligned_shards_and_missing_files_are_clear_errors(tmp_path):
    (tmp_path / "a.de").write_text("eins\nzwei\ndrei\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("one\ntwo\n", encoding="utf-8")
    dataset = StreamingParallelDataset({"de": str(tmp_path / "*.de"),
                                        "en": str(tmp_path / "*.en")})
    with pytest.raises(DataError, match=r"a\.en: ends at line 2 but .*a\.de goes on"):
        list(dataset.iter_pairs())
    with pytest.raises(DataError, match=r"path\.de: no file matches"):
        StreamingParallelDataset({"de": str(tmp_path / "missing*.de"), "en": str(tmp_path / "*.en")})
    (tmp_path / "b.de").write_text("x\n", encoding="utf-8")
    with pytest.raises(DataError, match="shard counts differ"):
        StreamingParallelDataset({"de": str(tmp_path / "*.de"), "en": str(tmp_path / "*.en")})


def test_streaming_splits_are_for_training_only(small_corpus, shards, tmp_path):
    from paragen.errors import ConfigError

    config = streaming_config(small_corpus, shards, tmp_path / "run", max_steps=1)
    config["task"]["data"]["valid"] = dict(config["task"]["data"]["train"])
    with pytest.raises(ConfigError, match="task.data.valid: streaming datasets are for training"):
        build_task(config)
    config = streaming_config(small_corpus, shards, tmp_path / "run", max_steps=1)
    config["task"]["dataloader"]["train"] = {"class": "DataLoader"}
    with pytest.raises(ConfigError, match="needs a streaming loader"):
        build_task(config)
