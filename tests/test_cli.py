"""The command line as a user meets it: verbs, plug-ins, bad input, Ctrl-C and resume."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import tiny_config, write_config

from paragen.checkpoint import load_checkpoint
from paragen.cli import main, run_main


@pytest.fixture(scope="module")
def trained(small_corpus, tmp_path_factory):
    """A tiny model trained for 10 steps through `paragen train` (shared by this module)."""
    root = tmp_path_factory.mktemp("trained")
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         root / "run")
    path = write_config(config, root / "config.yaml")
    assert main(["train", "--config", path]) == 0
    return root / "run"


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error message"
    return err[-1]


def test_generate_stdin_to_stdout_keeps_order_and_count(trained, small_corpus):
    lines = ["Ein Hund läuft.", "", "Zwei Männer spielen Fußball auf einer grünen Wiese."]
    result = subprocess.run([sys.executable, "-m", "paragen.cli", "generate", "--model",
                             str(trained), "--beam", "2"], input="\n".join(lines) + "\n",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_generate_files_and_evaluate_prints_signature(trained, small_corpus, tmp_path, capsys):
    out = tmp_path / "hyp.en"
    assert main(["generate", "--model", str(trained), "--input", small_corpus["valid"]["de"],
                 "--output", str(out), "--max-tokens", "64"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 40
    assert main(["evaluate", "--model", str(trained), "--input", small_corpus["valid"]["de"],
                 "--reference", small_corpus["valid"]["en"], "--output-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "test bleu = " in printed and "nrefs:1|case:mixed|eff:no|tok:13a" in printed
    assert "test chrf = " in printed
    # Hypotheses come back in input order: the greedy file and the evaluate dump agree.
    assert (tmp_path / "test.hyp").read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


@pytest.mark.slow
def test_bench_rows_per_precision_and_budget(trained, small_corpus, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", str(trained), "--input", small_corpus["valid"]["de"],
                 "--limit", "6", "--threads", "1", "--repeats", "1", "--precision", "fp32",
                 "bf16", "--max-tokens", "64", "256", "--rounds", "2", "--output",
                 str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["system"] for r in rows] == ["AR greedy", "AR greedy bf16", "AR beam4",
                                           "AR beam4 bf16"]
    for row in rows:
        assert [b["batch_tokens"] for b in row["batched_at"]] == [64, 256]
        assert row["batched"] == row["batched_at"][0] and row["batch1"]["sentences_per_s"] > 0
        # two rounds: each number is the median (here the mean) of the rounds' own numbers
        by_round = [r["batch1"]["ms_per_sentence_median"] for r in row["by_round"]]
        assert len(by_round) == 2
        assert row["batch1"]["ms_per_sentence_median"] == pytest.approx(sum(by_round) / 2)
    assert main(["bench", "--model", str(trained), "--input", small_corpus["valid"]["de"],
                 "--limit", "2", "--threads", "1", "--repeats", "1", "--only", "greedy"]) == 0
    # without --output, the result goes into the (first) model's folder
    beside_model = trained / "decode_speed.json"
    assert [r["system"] for r in json.loads(beside_model.read_text())["rows"]] == ["AR greedy"]
    assert main(["bench", "--model", str(trained), "--input", small_corpus["valid"]["de"],
                 "--only", "beam", "--output", str(tmp_path / "x.json")]) == 2
    assert "--only beam: no such setting" in _error_line(capsys)
    # int8 dynamic quantization is CPU-only: asking for it on a GPU is refused up front.
    assert main(["bench", "--model", str(trained), "--device", "cuda", "--quantize",
                 "--input", small_corpus["valid"]["de"], "--output", str(tmp_path / "x.json")]) == 2
    assert "--device cuda" in _error_line(capsys) and not (tmp_path / "x.json").exists()


def test_bench_scores_each_setting_against_references(trained, small_corpus, tmp_path, capsys):
    """--reference: every row carries the sacreBLEU of its output on the whole input (also
    when --limit times fewer), the number `generate`'s output scores; a reference file of
    another length is refused."""
    import sacrebleu

    out, hyp = tmp_path / "bench.json", tmp_path / "greedy.en"
    source, reference = small_corpus["valid"]["de"], small_corpus["valid"]["en"]
    assert main(["bench", "--model", str(trained), "--input", source, "--reference", reference,
                 "--limit", "8", "--threads", "1", "--repeats", "1", "--only", "greedy",
                 "--output", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert main(["generate", "--model", str(trained), "--input", source, "--output", str(hyp),
                 "--beam", "1"]) == 0
    references = open(reference, encoding="utf-8").read().splitlines()
    expected = sacrebleu.corpus_bleu(hyp.read_text(encoding="utf-8").splitlines(), [references])
    assert row["bleu"] == round(expected.score, 2) and "tok:13a" in row["bleu_signature"]
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")
    short = tmp_path / "short.en"
    short.write_text("A dog.\n", encoding="utf-8")
    assert main(["bench", "--model", str(trained), "--input", source, "--reference", str(short),
                 "--limit", "8", "--output", str(tmp_path / "x.json")]) == 2
    assert "1 lines, but --input has 40" in _error_line(capsys)
    assert not (tmp_path / "x.json").exists()


def test_average_checkpoints_by_step(small_corpus, tmp_path, capsys):
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run", max_steps=6, validate_interval=2)
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 0
    assert main(["average-checkpoints", "--dir", str(tmp_path / "run"), "--last", "2",
                 "--output", str(tmp_path / "run" / "average.pt")]) == 0
    averaged = load_checkpoint(str(tmp_path / "run" / "average.pt"))
    assert averaged["averaged_from"] == ["checkpoint_4.pt", "checkpoint_6.pt"]
    a, b = (load_checkpoint(str(tmp_path / "run" / f"checkpoint_{s}.pt"))["model"] for s in (4, 6))
    key = "encoder.layers.0.ffn.fc1.weight"
    assert (averaged["model"][key] - (a[key] + b[key]) / 2).abs().max() < 1e-6
    # A half-size copy of one checkpoint: fp16 storage, and it still decodes.
    half = tmp_path / "half" / "average.pt"
    assert main(["average-checkpoints", "--inputs", str(tmp_path / "run" / "checkpoint_6.pt"),
                 "--dtype", "fp16", "--output", str(half)]) == 0
    stored = load_checkpoint(str(half))["model"]
    assert stored[key].dtype == torch.float16
    assert (stored[key].float() - b[key]).abs().max() < 1e-3
    (tmp_path / "half" / "tokenizer.model").write_bytes(
        (tmp_path / "run" / "tokenizer.model").read_bytes())
    assert main(["generate", "--model", str(tmp_path / "half"), "--input",
                 small_corpus["valid"]["de"], "--output", str(tmp_path / "hyp")]) == 0
    assert len((tmp_path / "hyp").read_text(encoding="utf-8").splitlines()) == 40


def test_paragen_run_with_overrides_and_plugin(small_corpus, tmp_path, capsys):
    plugin = tmp_path / "myplugin"
    plugin.mkdir()
    (plugin / "__init__.py").write_text(
        "from paragen.criteria import LabelSmoothedCrossEntropy\n"
        "from paragen.registry import register_criterion\n"
        "CALLS = []\n"
        "@register_criterion\n"
        "class CountingCrossEntropy(LabelSmoothedCrossEntropy):\n"
        "    def forward(self, model, batch):\n"
        "        CALLS.append(1)\n"
        "        return super().forward(model, batch)\n")
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run", max_steps=50)
    path = write_config(config, tmp_path / "c.yaml")
    assert run_main(["--config", path, "--lib", str(plugin), "--task.trainer.max_steps", "3",
                     "task.criterion.class=CountingCrossEntropy"]) == 0
    import myplugin

    assert len(myplugin.CALLS) >= 3
    assert load_checkpoint(str(tmp_path / "run" / "last.pt"))["trainer"]["step"] == 3


@pytest.mark.parametrize("problem, expected", [
    ("missing", r"no/such/train\.de: file not found"),
    ("unequal", r"train\.de.* has 300 lines but .*short\.en.* has 5"),
    ("not_utf8", r"bad\.de:3: not valid UTF-8"),
    ("unknown_class", r"task\.model\.encoder\.class: unknown encoder class 'TransformerEncoderr'"),
    ("unknown_key", r"task\.model\.encoder\.num_layer: unexpected key.*did you mean 'num_layers'"),
    ("wrong_type", r"task\.trainer\.max_steps: expected int, got 'ten'"),
    ("bad_lib", r"--lib no_such_plugin_xyz: cannot import"),
])
def test_bad_input_gives_one_clear_line_and_nonzero_exit(problem, expected, small_corpus,
                                                         tmp_path, capsys):
    import re

    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run")
    task, args = config["task"], []
    if problem == "missing":
        task["data"]["train"]["path"]["de"] = "no/such/train.de"
    elif problem == "unequal":
        short = tmp_path / "short.en"
        short.write_text("a\nb\nc\nd\ne\n")
        task["data"]["train"]["path"]["en"] = str(short)
    elif problem == "not_utf8":
        bad = tmp_path / "bad.de"
        bad.write_bytes(b"ok\nfine\nbad \xff byte\n")
        (tmp_path / "bad.en").write_text("a\nb\nc\n")
        task["data"]["train"]["path"] = {"de": str(bad), "en": str(tmp_path / "bad.en")}
    elif problem == "unknown_class":
        task["model"]["encoder"]["class"] = "TransformerEncoderr"
    elif problem == "unknown_key":
        task["model"]["encoder"]["num_layer"] = 2
    elif problem == "wrong_type":
        task["trainer"]["max_steps"] = "ten"
    elif problem == "bad_lib":
        args = ["--lib", "no_such_plugin_xyz"]
    code = main(["train", "--config", write_config(config, tmp_path / "c.yaml"), *args])
    assert code == 2
    line = _error_line(capsys)
    assert line.startswith("error: ") and re.search(expected, line), line
    assert not (tmp_path / "run" / "last.pt").exists()  # nothing half-done left behind


def test_generate_rejects_bad_stdin_bytes_with_line_number(trained):
    result = subprocess.run([sys.executable, "-m", "paragen.cli", "generate", "--model",
                             str(trained)], input=b"Ein Hund.\nkaputt \xff\n",
                            capture_output=True, timeout=120)
    assert result.returncode == 2
    assert b"<stdin>:2: not valid UTF-8" in result.stderr.splitlines()[-1]


def _losses(metrics_path) -> dict:
    """step → loss, the last record per step winning (a resumed run rewrites the steps it
    redoes after the checkpoint it restarted from)."""
    import json

    records = []
    for line in metrics_path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # the line a kill -9 cut short
            continue
    return {r["step"]: r["loss"] for r in records if "loss" in r and "validation" not in r}


def _resumable_config(small_corpus, tmp_path, name, max_steps=18):
    cfg = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                      tmp_path / name, max_steps=max_steps, log_interval=1, validate_interval=4)
    cfg["task"]["model"]["encoder"]["dropout"] = cfg["task"]["model"]["decoder"]["dropout"] = 0.3
    cfg["env"]["threads"] = 1
    return write_config(cfg, tmp_path / f"{name}.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGINT", "SIGKILL"])
def test_interrupt_then_resume_repeats_the_uninterrupted_loss_sequence(small_corpus, tmp_path,
                                                                        stop):
    """Ctrl-C (the run saves after the update in progress) or SIGKILL (no handler runs) at a
    random step; resuming then gives, step for step, the losses of a run never interrupted."""
    import random

    steps = 30
    assert main(["train", "--config",
                 _resumable_config(small_corpus, tmp_path, "straight", steps)]) == 0
    reference = _losses(tmp_path / "straight" / "metrics.jsonl")
    assert sorted(reference) == list(range(1, steps + 1))

    stop_at = random.Random().randint(6, 15)
    path = _resumable_config(small_corpus, tmp_path, "stopped", steps)
    process = subprocess.Popen([sys.executable, "-m", "paragen.cli", "train", "--config", path],
                               stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "stopped" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or
                                      max(_losses(metrics), default=0) < stop_at):
        time.sleep(0.02)
    process.send_signal(getattr(signal, stop))
    _, err = process.communicate(timeout=120)
    if stop == "SIGINT":
        assert process.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
    else:
        assert process.returncode == -signal.SIGKILL
    restart = load_checkpoint(str(tmp_path / "stopped" / "last.pt"))["trainer"]["step"]
    assert 4 <= restart < steps, (stop_at, restart)
    if stop == "SIGINT":  # saved where it stopped, not at the last validation
        assert restart >= stop_at
        assert not [n for n in os.listdir(tmp_path / "stopped") if n.startswith(".tmp-")]
    assert main(["train", "--config", path]) == 0
    resumed = _losses(metrics)
    assert sorted(resumed) == list(range(1, steps + 1))
    for step in range(restart + 1, steps + 1):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-6), (stop_at, step)



def test_a_decode_reads_the_checkpoint_once(trained, monkeypatch):
    """load_trained_task opens the checkpoint once, memory-mapped (the optimizer state beside
    the weights is never read), and the model gets exactly the stored weights."""
    import paragen.checkpoint as checkpoint_module
    from paragen.tasks.build import load_trained_task

    calls = []
    real_load = checkpoint_module.torch.load

    def counting_load(*args, **kwargs):
        calls.append(kwargs.get("mmap"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "load", counting_load)
    task = load_trained_task(str(trained), "infer")
    assert calls == [True]
    stored = load_checkpoint(str(trained / "best.pt"))["model"]
    for name, value in task.model.state_dict().items():
        assert torch.equal(value, stored[name]), name


def test_bench_builds_a_system_at_the_thread_count_it_times(trained, tmp_path):
    """A model trained with `env.threads: 2` keeps that in its saved config; bench must still
    build it (ONNX sessions fix their threads there) at the count it is about to time."""
    from paragen.commands.bench import AR_SETTINGS, build_for

    folder = tmp_path / "two-threads"
    shutil.copytree(trained, folder)
    for name in ("best.pt", "last.pt"):
        state = torch.load(folder / name, map_location="cpu", weights_only=True)
        state["config"].setdefault("env", {})["threads"] = 2
        torch.save(state, folder / name)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        build_for(str(folder), AR_SETTINGS[0][1], False, "cpu", "fp32", [])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
