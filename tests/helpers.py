"""Shared builders for end-to-end tests: a small slice of Multi30k and a tiny model config."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict

import yaml

TINY_MODEL = {
    "class": "Seq2Seq", "d_model": 32, "share_embedding": "all",
    "encoder": {"class": "TransformerEncoder", "num_layers": 1, "num_heads": 2, "ffn_dim": 64,
                "dropout": 0.0},
    "decoder": {"class": "TransformerDecoder", "num_layers": 1, "num_heads": 2, "ffn_dim": 64,
                "dropout": 0.0},
}


def classifier_config(sst2: Dict[str, Any], save_dir: Path, **task: Any) -> Dict[str, Any]:
    """A tiny SST-2 classifier (see the `sst2` fixture) trained for 60 steps; `task` keys
    replace the task section's."""
    return copy.deepcopy({
        "task": {
            "class": "SequenceClassificationTask", "text": "sentence", "label": "label",
            "tokenizer": {"class": "SentencePieceTokenizer", "model": sst2["spm"]},
            "data": {"train": {"class": "TsvDataset", "path": sst2["train"]},
                     "valid": {"class": "TsvDataset", "path": sst2["dev"]}},
            "dataloader": {"train": {"class": "DataLoader", "sampler": {
                "class": "BucketSampler", "max_tokens": 1024, "max_sentences": 32}}},
            "model": {"class": "SequenceClassifier", "d_model": 32, "pooling": "mean",
                      "pooler_dropout": 0.0,
                      "encoder": {"class": "TransformerEncoder", "num_layers": 1,
                                  "num_heads": 2, "ffn_dim": 64, "dropout": 0.0}},
            "trainer": {"class": "Trainer", "optimizer": {"class": "AdamW", "lr": 3e-3},
                        "lr_scheduler": {"class": "InverseSquareRoot", "warmup_steps": 5},
                        "max_steps": 60, "validate_interval": 30, "save_dir": str(save_dir),
                        "log_interval": 5},
            **task,
        },
        "env": {"device": "cpu", "seed": 1, "threads": 1, "no_progress_bar": True},
    })


def write_slice(data_dir: Path, out: Path, lines: int, split: str = "train") -> Dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for lang in ("de", "en"):
        text = (data_dir / "multi30k" / f"{split}.{lang}").read_text(encoding="utf-8")
        target = out / f"{split}.{lang}"
        target.write_text("\n".join(text.splitlines()[:lines]) + "\n", encoding="utf-8")
        paths[lang] = str(target)
    return paths


def tiny_config(train: Dict[str, str], valid: Dict[str, str], spm_model: str, save_dir: Path,
                **trainer: Any) -> Dict[str, Any]:
    return copy.deepcopy({
        "task": {
            "class": "TranslationTask", "mode": "train", "src": "de", "tgt": "en",
            "tokenizer": {"class": "SentencePieceTokenizer", "model": spm_model},
            "data": {"train": {"class": "ParallelTextDataset", "path": train},
                     "valid": {"class": "ParallelTextDataset", "path": valid}},
            "dataloader": {"train": {"class": "DataLoader",
                                     "sampler": {"class": "BucketSampler", "max_tokens": 600}}},
            "model": copy.deepcopy(TINY_MODEL),
            "criterion": {"class": "LabelSmoothedCrossEntropy", "epsilon": 0.1},
            "trainer": {"class": "Trainer",
                        "optimizer": {"class": "AdamW", "lr": 3e-3},
                        "lr_scheduler": {"class": "InverseSquareRoot", "warmup_steps": 10},
                        "max_steps": 10, "validate_interval": 0, "save_dir": str(save_dir),
                        "log_interval": 5, **trainer},
            "generator": {"class": "SequenceGenerator",
                          "search": {"class": "GreedySearch", "max_length_b": 5}},
        },
        "env": {"device": "cpu", "seed": 3, "no_progress_bar": True},
    })


def tiny_ctc_config(train: Dict[str, str], valid: Dict[str, str], spm_model: str,
                    save_dir: Path, **trainer: Any) -> Dict[str, Any]:
    """`tiny_config` for a CTCNAT with 2× slots, trained with GlancingCTC."""
    config = tiny_config(train, valid, spm_model, save_dir, **trainer)
    config["task"]["model"].update({"class": "CTCNAT", "upsample": 2.0})
    config["task"]["criterion"] = {"class": "GlancingCTC"}
    config["task"]["generator"] = {"class": "NATGenerator"}
    return config


def error_line(capsys) -> str:
    """The one `error:` line a failed command ends with (and no traceback before it)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), lines
    return lines[-1]


def write_config(config: Dict[str, Any], path: Path) -> str:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def write_pairs(folder: Path, pairs: Dict[str, list], name: str = "tiny") -> Dict[str, str]:
    """Write {lang: lines} as folder/name.<lang> files; returns {lang: path}."""
    paths = {}
    for lang, lines in pairs.items():
        path = folder / f"{name}.{lang}"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[lang] = str(path)
    return paths


def torchrun_train(config_path: str, ranks: int = 2):
    """`paragen train` under torchrun on CPU (gloo), one thread per rank, loopback only."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
         "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "paragen.cli", "train",
         "--config", config_path],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
