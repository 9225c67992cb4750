"""`paragen export --format ctranslate2`: CTranslate2 decodes as paragen's own searches do.

The models are random, not trained. A tiny model trained a few steps repeats one token up to
the length limit in every sentence, which compares little; here weights are drawn with a wide
spread (outputs differ between sentences) and eos's output row is scaled up, so that some
outputs end before their limit and others reach it, and both paths are compared.
"""
from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest
import torch
from torch import nn

from helpers import error_line, tiny_config
from paragen.checkpoint import save_checkpoint
from paragen.cli import main
from paragen.tasks.build import build_task, load_trained_task


SENTENCES = 20
GREEDY = {"class": "GreedySearch", "max_length_b": 5}
BEAM = {"class": "BeamSearch", "beam_size": 4, "max_length_b": 5}
# name: (model config changes, eos output-row scale, seed); the scale (found by trying)
# makes a third to three quarters of the outputs end before their limit
VARIANTS = {
    # TINY_MODEL as it is: post-norm, sinusoidal positions, ReLU, every embedding shared
    "post-norm": ({}, 3.0, 1),
    "pre-norm": ({"share_embedding": "none",
                  "encoder": {"pre_norm": True, "learned_positions": True, "activation": "gelu",
                              "num_layers": 2},
                  "decoder": {"pre_norm": True, "learned_positions": True, "activation": "gelu"}},
                 1.5, 0),
    "mixed": ({"share_embedding": "decoder",
               "encoder": {"pre_norm": True, "learned_positions": True},
               "decoder": {"num_heads": 4, "ffn_dim": 48}}, 1.5, 0),
}


def random_model(spm: str, folder: Path, variant: str) -> Path:
    """A model folder (best.pt + tokenizer.model) holding random weights of `variant`."""
    changes, eos_scale, seed = VARIANTS[variant]
    folder.mkdir(parents=True)
    shutil.copyfile(spm, folder / "tokenizer.model")
    unused = {"de": "unused", "en": "unused"}  # infer mode reads no data
    config = tiny_config(unused, unused, "tokenizer.model", folder)
    model = config["task"]["model"]
    for key, value in changes.items():
        model[key] = {**model[key], **value} if isinstance(value, dict) else value
    config["task"]["mode"] = "infer"
    task = build_task(copy.deepcopy(config), base_dir=str(folder))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in task.model.named_parameters():
            is_gain = "norm" in name and name.endswith("weight")
            noise = torch.randn(weight.shape, generator=generator)
            weight.copy_(noise * 0.5 if weight.dim() > 1 else 1.0 * is_gain + 0.1 * noise)
        for module in task.model.modules():  # pad rows stay zero, as training keeps them
            if isinstance(module, nn.Embedding):
                module.weight[task.tgt_tokenizer.pad_id] = 0.0
        projection = task.model.decoder.output_projection.weight
        projection[task.tgt_tokenizer.pad_id] = 0.0
        projection[task.tgt_tokenizer.eos_id] *= eos_scale
    save_checkpoint({"config": config, "model": task.model.state_dict()}, str(folder / "best.pt"))
    return folder


@pytest.fixture(scope="module")
def sources(data_dir) -> List[str]:
    """Short test sentences (a 400-piece vocabulary makes long ones 100 pieces long)."""
    from paragen.datasets import read_lines

    lines = read_lines(str(data_dir / "multi30k" / "test2016.de"))[:300]
    return sorted(lines, key=len)[:SENTENCES]


@pytest.fixture(scope="module", params=list(VARIANTS))
def models(request, small_corpus, tmp_path_factory) -> Tuple[str, str]:
    """(PyTorch model folder, its float32 CTranslate2 export)."""
    root = tmp_path_factory.mktemp(f"ct2-{request.param}")
    folder = random_model(small_corpus["spm"], root / "model", request.param)
    assert main(["export", "--model", str(folder), "--format", "ctranslate2",
                 "--output", str(root / "ct2")]) == 0
    return str(folder), str(root / "ct2")


def decode(model: str, sources: Sequence[str], search: Optional[Dict[str, Any]] = None,
           overrides: Sequence[str] = ()):
    """(task, src (B,S), tokens (B,T), scores (B,)) for all sentences in one padded batch."""
    task = load_trained_task(model, "infer", list(overrides), search=search)
    src = task.collate(list(range(len(sources))), task.encode(sources))["src"]
    tokens, scores = task.generator(src)
    return task, src, tokens, scores


def limits(src: torch.Tensor) -> torch.Tensor:
    """Each sentence's output limit under GREEDY/BEAM: int(1.2·src_len + 5), pad id 0."""
    return (1.2 * src.ne(0).sum(1).double() + 5).long()


def search_steps(task, src: torch.Tensor) -> List[int]:
    """Decoder steps paragen's search runs for each sentence alone: its limit bit when it ran
    limit + 1 steps (eos forced on the last one)."""
    calls: List[int] = []
    hook = task.model.decoder.register_forward_hook(lambda *_: calls.append(1))
    steps = []
    try:
        for row in src:
            calls.clear()
            task.generator(row[row.ne(0)][None])
            steps.append(len(calls))
    finally:
        hook.remove()
    return steps


def test_manifest_and_vocabulary(models):
    _, exported = models
    manifest = json.loads((Path(exported) / "export.json").read_text())
    assert (manifest["format"], manifest["family"], manifest["quantized"]) == \
        ("ctranslate2", "ar", None)
    task_config = manifest["config"]["task"]
    assert task_config["model"] == {"class": "CTranslate2Model", "path": "."}
    assert task_config["generator"] == {"class": "CTranslate2Generator", "beam_size": 1,
                                        "lenpen": 1.0, "max_length_a": 1.2, "max_length_b": 5,
                                        "min_length": 0}
    ct2_config = json.loads((Path(exported) / "config.json").read_text())
    assert (ct2_config["bos_token"], ct2_config["eos_token"], ct2_config["unk_token"],
            ct2_config["decoder_start_token"], ct2_config["add_source_eos"]) == \
        ("<s>", "</s>", "<unk>", "<s>", True)
    assert ct2_config["layer_norm_epsilon"] == 1e-5
    vocabulary = json.loads((Path(exported) / "shared_vocabulary.json").read_text())
    assert len(vocabulary) == 400 and vocabulary[:4] == ["<pad>", "<unk>", "<s>", "</s>"]


def test_greedy_equals_paragen_token_for_token(models, sources):
    """One padded batch with a limit per sentence: outputs cut at their own limit, and the
    sentences that end earlier, are paragen's; `translate` gives the same text."""
    model, exported = models
    task, src, ref_tokens, ref_scores = decode(model, sources, search=GREEDY)
    ct2_task, _, tokens, scores = decode(exported, sources)
    assert torch.equal(tokens, ref_tokens)
    lengths, limit = ref_tokens.ne(0).sum(1), limits(src)
    ended = lengths < limit
    assert 3 <= int(ended.sum()) <= SENTENCES - 3  # both kinds of sentence are compared
    assert len({tuple(row) for row in ref_tokens.tolist()}) >= SENTENCES // 2
    # summed log-probs; CTranslate2 drops pad before the softmax, paragen after
    assert torch.allclose(scores[ended], ref_scores[ended], atol=5e-3, rtol=0)
    assert ct2_task.translate(sources) == task.translate(sources)


def test_beam_equals_paragen_where_the_limit_does_not_bite(models, sources):
    """Beam 4, lenpen 1: equal tokens, and length-normalised scores, for every sentence whose
    search ends before its limit; at the limit paragen forces eos, CTranslate2 does not."""
    model, exported = models
    task, src, ref_tokens, ref_scores = decode(model, sources, search=BEAM)
    _, _, tokens, scores = decode(exported, sources, overrides=["task.generator.beam_size=4"])
    free = torch.tensor([steps <= int(limit)
                         for steps, limit in zip(search_steps(task, src), limits(src))])
    assert int(free.sum()) >= 3
    width = max(int(tokens.ne(0).sum(1).max()), int(ref_tokens.ne(0).sum(1).max()))
    tokens, ref_tokens = (nn.functional.pad(t, (0, width - t.size(1)))
                          for t in (tokens, ref_tokens))
    assert torch.equal(tokens[free], ref_tokens[free])
    assert torch.allclose(scores[free], ref_scores[free], atol=1e-3, rtol=0)


def test_int8_export_generate_and_bench(small_corpus, sources, tmp_path, monkeypatch):
    """The command line: an int8 export generates, and bench times CTranslate2 in float32
    and int8 beside the PyTorch model."""
    monkeypatch.setattr("paragen.commands.bench.plot", lambda rows, path: None)  # no chart
    model = random_model(small_corpus["spm"], tmp_path / "model", "post-norm")
    float32, int8 = tmp_path / "ct2", tmp_path / "ct2-int8"
    assert main(["export", "--model", str(model), "--format", "ctranslate2",
                 "--output", str(float32)]) == 0
    assert main(["export", "--model", str(model), "--format", "ctranslate2", "--quantize", "int8",
                 "--output", str(int8)]) == 0
    assert json.loads((int8 / "export.json").read_text())["quantized"] == "int8"
    # int8 weight matrices; the position tables stay float32
    assert (int8 / "model.bin").stat().st_size < 0.7 * (float32 / "model.bin").stat().st_size
    inputs, outputs = tmp_path / "in.de", tmp_path / "out.en"
    inputs.write_text("\n".join(sources) + "\n", encoding="utf-8")
    assert main(["generate", "--model", str(int8), "--input", str(inputs),
                 "--output", str(outputs), "--task.generator.beam_size", "2"]) == 0
    assert len(outputs.read_text(encoding="utf-8").splitlines()) == SENTENCES
    greedy = tmp_path / "greedy.en"  # --beam N sets CTranslate2's beam as it does ours
    assert main(["generate", "--model", str(float32), "--input", str(inputs),
                 "--output", str(greedy), "--beam", "1"]) == 0
    by_key = tmp_path / "by_key.en"
    assert main(["generate", "--model", str(float32), "--input", str(inputs),
                 "--output", str(by_key), "--task.generator.beam_size", "1"]) == 0
    assert greedy.read_text(encoding="utf-8") == by_key.read_text(encoding="utf-8")
    report = tmp_path / "speed.json"
    bench = ["bench", "--input", str(inputs), "--limit", "5", "--threads", "1", "--repeats", "1",
             "--output", str(report)]
    assert main(bench + ["--model", str(float32), "--model", str(int8), "--model", str(model),
                         "--only", "greedy"]) == 0
    rows = json.loads(report.read_text())["rows"]
    assert [(row["system"], Path(row["model"]).name) for row in rows] == [
        ("CTranslate2 float32 greedy", "ct2"), ("CTranslate2 int8 greedy", "ct2-int8"),
        ("AR greedy", "model")]
    assert all(row["batch1"]["sentences_per_s"] > 0 and row["threads"] == 1 for row in rows)
    # --quantize: a float32 export also runs in CTranslate2's int8
    assert main(bench + ["--model", str(float32), "--quantize"]) == 0
    assert [row["system"] for row in json.loads(report.read_text())["rows"]] == [
        "CTranslate2 float32 greedy", "CTranslate2 int8 greedy", "CTranslate2 float32 beam4",
        "CTranslate2 int8 beam4"]


def test_missing_ctranslate2_is_one_clear_line(small_corpus, tmp_path, monkeypatch, capsys):
    model = random_model(small_corpus["spm"], tmp_path / "model", "post-norm")
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # `import ctranslate2` fails
    assert main(["export", "--model", str(model), "--format", "ctranslate2",
                 "--output", str(tmp_path / "ct2")]) != 0
    assert "pip install 'paragen[ctranslate2]'" in error_line(capsys)
    assert not (tmp_path / "ct2").exists()
