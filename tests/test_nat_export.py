"""`paragen export` of CMLM, DA-Transformer and NAT-CRF: the exported graphs decode token for
token like the PyTorch model (the DAG search and the CRF's Viterbi stay in Python), and bench,
generate and serve run them."""
import copy
import json

import pytest
import torch

from helpers import tiny_config, write_config
from paragen.cli import main
from paragen.errors import ConfigError
from paragen.generators import DAGGenerator, NATGenerator
from paragen.interfaces import DAGModel
from paragen.tasks.build import load_trained_task

SENTENCES = 20  # the first lines of Multi30k test2016
MODELS = {
    "cmlm": ({"class": "CMLM", "max_length_offset": 8}, {"class": "NATCrossEntropy"},
             {"class": "MaskPredictGenerator", "iterations": 4, "length_beam": 3}),
    "dat": ({"class": "DATransformer", "upsample": 2}, {"class": "DAGLoss"},
            {"class": "DAGGenerator"}),
    "crf": ({"class": "NATCRF", "max_length_offset": 8, "crf_rank": 8, "crf_beam": 4},
            {"class": "CRFLoss"}, {"class": "NATGenerator"}),
}
# Generator settings decoded by both the PyTorch model and its export.
SETTINGS = {
    "cmlm": [["task.generator.length_beam=1"], []],  # the export is set to one iteration
    "dat": [[f"task.generator.strategy={s}"] for s in ("greedy", "lookahead", "viterbi")],
    "crf": [[], ["task.generator.length_beam=3"]],
}


@pytest.fixture(scope="module")
def trained(small_corpus, tmp_path_factory):
    """The three models after two updates, through `paragen train`: near-random weights give
    long, varied outputs, so equal outputs mean something."""
    root = tmp_path_factory.mktemp("nat-export")
    for name, (model, criterion, generator) in MODELS.items():
        config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                             root / name, max_steps=2)
        config["task"]["model"].update(copy.deepcopy(model))
        config["task"].update(criterion=criterion, generator=generator)
        assert main(["train", "--config", write_config(config, root / f"{name}.yaml")]) == 0
    return root


@pytest.fixture(scope="module")
def exported(trained):
    """Every model exported in both formats: {(name, format): folder}."""
    folders = {}
    for name in MODELS:
        for fmt in ("onnx", "torchscript"):
            folders[name, fmt] = trained / f"{name}-{fmt}"
            assert main(["export", "--model", str(trained / name), "--format", fmt,
                         "--output", str(folders[name, fmt])]) == 0
    return folders


@pytest.fixture(scope="module")
def test_sources(data_dir):
    from paragen.datasets import read_lines

    return read_lines(str(data_dir / "multi30k" / "test2016.de"))[:SENTENCES]


def decode(model: str, sources, overrides):
    task = load_trained_task(model, "infer", list(overrides))
    src = task.collate(list(range(len(sources))), task.encode(sources))["src"]
    tokens, scores = task.generator(src)
    return tokens, scores, task


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", list(MODELS))
def test_exported_model_decodes_token_for_token(trained, exported, test_sources, name, fmt):
    for overrides in SETTINGS[name]:
        pytorch = overrides + (["task.generator.iterations=1"] if name == "cmlm" else [])
        ref_tokens, ref_scores, _ = decode(str(trained / name), test_sources, pytorch)
        tokens, scores, task = decode(str(exported[name, fmt]), test_sources, overrides)
        assert torch.equal(tokens, ref_tokens), overrides
        assert (scores is None) == (ref_scores is None), overrides
        if scores is not None:  # NPD and Viterbi paths rank by them
            assert torch.allclose(scores, ref_scores, atol=1e-4), overrides
        assert len({tuple(row) for row in tokens.tolist()}) > SENTENCES // 2
    assert type(task.model).__name__ == "ExportedModel"
    assert isinstance(task.model, DAGModel) == (name == "dat")


def test_releasing_memory_returns_onnx_arenas_and_changes_no_output(exported, test_sources):
    """`bench` scores every system it keeps loaded inside `releasing_memory`: the outputs must
    stay the same, every ONNX graph must run with arena shrinkage, and
    the sessions must go back to keeping their arenas afterwards (the timed calls)."""
    from paragen.models.exported import releasing_memory

    task = load_trained_task(str(exported["crf", "onnx"]), "infer",
                             ["task.generator.length_beam=3"])
    runner = task.model.runner
    expected = task.translate(test_sources)
    with releasing_memory():
        entry = runner.run_options.get_run_config_entry("memory.enable_memory_arena_shrinkage")
        assert entry == "cpu:0"
        assert task.translate(test_sources) == expected
    assert runner.run_options is None


def test_crf_lattice_graph_handles_one_slot_and_padding(trained, exported):
    """A one-slot batch has an empty (B,0,k,k) moves tensor; padded slots get pad and 0."""
    reference = load_trained_task(str(trained / "crf"), "infer").model
    src = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0]])
    with torch.no_grad():
        memory, memory_padding, _ = reference.encode(src)
        for fmt in ("onnx", "torchscript"):
            model = load_trained_task(str(exported["crf", fmt]), "infer").model
            for lengths in ([1, 1], [6, 3]):
                padding = torch.arange(max(lengths))[None, :] >= torch.tensor(lengths)[:, None]
                expected = reference.predict_slots(src, memory, memory_padding, padding)
                tokens, scores = model.predict_slots(src, memory, memory_padding, padding)
                assert torch.equal(tokens, expected[0]), (fmt, lengths)
                assert torch.allclose(scores, expected[1], atol=1e-5), (fmt, lengths)
                assert (tokens[padding] == reference.pad_id).all()
                assert (scores[padding] == 0).all()


def test_exported_models_refuse_what_their_graphs_cannot_do(exported):
    with pytest.raises(ConfigError, match=r"task\.generator\.iterations: ExportedModel decodes "
                                          r"in one pass .* set iterations: 1"):
        load_trained_task(str(exported["cmlm", "onnx"]), "infer",
                          ["task.generator.iterations=4"])
    with pytest.raises(ConfigError, match=r"task\.generator\.refine_steps: .* refine_steps: 0"):
        load_trained_task(str(exported["crf", "onnx"]), "infer",
                          ["task.generator.refine_steps=1"])
    dag = load_trained_task(str(exported["dat", "onnx"]), "infer").model
    crf = load_trained_task(str(exported["crf", "onnx"]), "infer").model
    with pytest.raises(ConfigError, match="decoded by DAGGenerator"):
        NATGenerator(model=dag, bos_id=1, eos_id=2, pad_id=0)
    with pytest.raises(ConfigError, match="DAGGenerator decodes a DATransformer"):
        DAGGenerator(model=crf, bos_id=1, eos_id=2, pad_id=0)


@pytest.mark.slow
def test_bench_times_each_model_and_its_export(trained, exported, test_sources, tmp_path,
                                               capsys):
    source = tmp_path / "test.de"
    source.write_text("\n".join(test_sources) + "\n", encoding="utf-8")
    expected = {
        "cmlm": ("CMLM", ["single", "mask-predict-4", "mask-predict-10"], ["single"]),
        "dat": ("DATransformer", ["greedy", "lookahead", "viterbi"],
                ["greedy", "lookahead", "viterbi"]),
        "crf": ("NATCRF", ["single", "NPD-5", "refine-1"], ["single", "NPD-5"]),
    }
    for name, (model_class, settings, exported_settings) in expected.items():
        for folder, system, names in ((trained / name, model_class, settings),
                                      (exported[name, "onnx"], f"{model_class} onnx",
                                       exported_settings)):
            output = tmp_path / f"{folder.name}.json"
            assert main(["bench", "--model", str(folder), "--input", str(source), "--limit", "5",
                         "--threads", "1", "--repeats", "1", "--output", str(output)]) == 0
            systems = [f"{system} {setting}" for setting in names]
            assert [row["system"] for row in json.loads(output.read_text())["rows"]] == systems
            printed = [line for line in capsys.readouterr().out.splitlines() if "sent/s" in line]
            assert [line.startswith(name + " ") for line, name in zip(printed, systems)] \
                == [True] * len(systems)
    # an exported CMLM has no mask-predict settings, and the error says what it has
    assert main(["bench", "--model", str(exported["cmlm", "onnx"]), "--input", str(source),
                 "--only", "mask-predict-4"]) != 0
    assert "no such setting for these models (they have: single)" in capsys.readouterr().err


def test_generate_and_serve_an_exported_dag(exported, test_sources, tmp_path):
    from fastapi.testclient import TestClient

    from paragen.serving.app import create_app

    folder = str(exported["dat", "onnx"])
    task = load_trained_task(folder, "infer")
    expected = task.translate(test_sources)
    src_file, out_file = tmp_path / "in.de", tmp_path / "out.en"
    src_file.write_text("\n".join(test_sources) + "\n", encoding="utf-8")
    assert main(["generate", "--model", folder, "--input", str(src_file),
                 "--output", str(out_file)]) == 0
    assert out_file.read_text(encoding="utf-8").splitlines() == expected
    with TestClient(create_app(task, "dat-onnx")) as client:
        reply = client.post("/v1/generate", json={"inputs": test_sources[:3]})
        assert reply.status_code == 200
        assert reply.json()["outputs"] == expected[:3]


def test_onnx_profile_sums_node_time_by_operator(exported, test_sources, tmp_path):
    """`benchmarks/onnx_profile.py` profiles the timed passes of an ONNX folder: shares by
    operator per graph, the fused attention node among them."""
    import subprocess
    import sys
    from pathlib import Path

    sources = tmp_path / "in.de"
    sources.write_text("\n".join(test_sources) + "\n", encoding="utf-8")
    output = tmp_path / "profile.json"
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "onnx_profile.py"
    subprocess.run([sys.executable, str(script), "--model", str(exported["dat", "onnx"]),
                    "--input", str(sources), "--repeats", "1", "--output", str(output)],
                   check=True, capture_output=True)
    [row] = json.loads(output.read_text())["models"]
    assert row["fused_attention"] and row["timing"]["sentences_per_s"] > 0
    assert set(row["graphs"]) == {"encoder", "graph"}
    for graph in row["graphs"].values():
        shares = graph["share_by_operator"]
        # each share is rounded to 4 decimals: the sum may pass 1 by half a unit per share
        assert graph["node_seconds"] > 0
        assert 0.9 < sum(shares.values()) <= 1 + 0.00005 * len(shares)
        assert shares["MultiHeadAttention"] > 0
