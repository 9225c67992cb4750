"""`paragen export`: ONNX and TorchScript graphs decode exactly like the PyTorch model."""
import copy
import json

import pytest
import torch

from helpers import tiny_config, write_config
from paragen.cli import main
from paragen.errors import ConfigError
from paragen.model_folder import SUFFIX
from paragen.tasks.build import load_trained_task

SENTENCES = 40  # the first lines of Multi30k test2016


@pytest.fixture(scope="module")
def trained(small_corpus, tmp_path_factory):
    """A tiny AR model and a tiny GLAT after one update: near-random weights give long, varied
    outputs (a few more steps teach a tiny model to emit eos at once, which compares little)."""
    root = tmp_path_factory.mktemp("export")
    ar = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                     root / "ar", max_steps=1)
    glat = copy.deepcopy(ar)
    glat["task"]["trainer"]["save_dir"] = str(root / "glat")
    glat["task"]["model"].update({"class": "GLAT", "max_length_offset": 8})
    glat["task"]["criterion"] = {"class": "GlancingCrossEntropy"}
    glat["task"]["generator"] = {"class": "NATGenerator", "remove_repeats": True}
    ctc = copy.deepcopy(glat)
    ctc["task"]["trainer"]["save_dir"] = str(root / "glat_ctc")
    ctc["task"]["model"].update({"class": "CTCNAT", "upsample": 2})
    del ctc["task"]["model"]["max_length_offset"]
    ctc["task"]["criterion"] = {"class": "GlancingCTC"}
    for name, config in (("ar", ar), ("glat", glat), ("glat_ctc", ctc)):
        assert main(["train", "--config", write_config(config, root / f"{name}.yaml")]) == 0
    return root


@pytest.fixture(scope="module")
def test_sources(data_dir):
    from paragen.datasets import read_lines

    return read_lines(str(data_dir / "multi30k" / "test2016.de"))[:SENTENCES]


def decode(model: str, sources, overrides=(), beam=None):
    from paragen.tasks.build import search_for_beam

    task = load_trained_task(model, "infer", list(overrides), search=search_for_beam(beam))
    src = task.collate(list(range(len(sources))), task.encode(sources))["src"]
    tokens, scores = task.generator(src)
    return tokens, scores, task.translate(sources)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("family,settings", [
    ("ar", [{"beam": 1}, {"beam": 4}]),
    ("glat", [{}, {"overrides": ["task.generator.length_beam=3"]}]),
    ("glat_ctc", [{}, {"overrides": ["task.generator.return_scores=true"]}]),
])
@pytest.mark.slow
def test_exported_model_decodes_token_for_token(trained, test_sources, tmp_path, family,
                                                settings, fmt):
    exported = tmp_path / f"{family}-{fmt}"
    assert main(["export", "--model", str(trained / family), "--format", fmt,
                 "--output", str(exported)]) == 0
    manifest = json.loads((exported / "export.json").read_text())
    assert manifest["config"]["task"]["model"]["class"] == "ExportedModel"
    for setting in settings:
        ref_tokens, ref_scores, ref_text = decode(str(trained / family), test_sources, **setting)
        tokens, scores, text = decode(str(exported), test_sources, **setting)
        assert torch.equal(tokens, ref_tokens), setting
        if ref_scores is None:  # a NAT single pass: the tokens-only graph ran
            assert scores is None and family != "ar", setting
        else:
            assert torch.allclose(scores, ref_scores, atol=1e-4), setting
        assert text == ref_text
        # the outputs differ between sentences, so their equality means something
        assert len({tuple(row) for row in tokens.tolist()}) > SENTENCES // 2
    if family != "ar":  # an export made before the tokens-only graph: the decoder graph serves
        manifest["graphs"].remove("tokens")
        (exported / "export.json").write_text(json.dumps(manifest))
        (exported / f"tokens{SUFFIX[fmt]}").unlink()
        tokens, _, _ = decode(str(exported), test_sources)
        assert torch.equal(tokens, decode(str(trained / family), test_sources)[0])


def test_an_exported_ar_model_reranks_npd_candidates_as_the_pytorch_one(trained, test_sources,
                                                                        tmp_path):
    """`reranker:` an exported AR folder scores candidates through its block graph, as the
    PyTorch teacher does in its teacher-forced pass; an exported NAT model is refused."""
    from paragen.generators.nat import load_reranker

    task = load_trained_task(str(trained / "glat"), "infer", ["task.generator.length_beam=3"])
    src = task.collate(list(range(8)), task.encode(test_sources[:8]))["src"]
    candidates, _ = task.generator(src)  # length_beam 3 → scored one per source; reuse rows
    candidates = candidates.repeat_interleave(2, dim=0)  # two candidates per source
    ids = task.tgt_tokenizer
    reference = load_reranker(str(trained / "ar"), ids.pad_id)(src, candidates, ids.bos_id,
                                                                ids.eos_id)
    for fmt in ("onnx", "torchscript"):
        folder = tmp_path / f"ar-{fmt}"
        assert main(["export", "--model", str(trained / "ar"), "--format", fmt,
                     "--output", str(folder)]) == 0
        score = load_reranker(str(folder), ids.pad_id)
        assert torch.allclose(score(src, candidates, ids.bos_id, ids.eos_id), reference,
                              atol=1e-4), fmt
    reranked = load_trained_task(str(trained / "glat"), "infer", [
        "task.generator.length_beam=3", f"task.generator.reranker={tmp_path / 'ar-onnx'}"])
    expected = load_trained_task(str(trained / "glat"), "infer", [
        "task.generator.length_beam=3", f"task.generator.reranker={trained / 'ar'}"])
    assert reranked.translate(test_sources) == expected.translate(test_sources)
    # bench scores inside releasing_memory: the reranker's graphs hand their arenas back too
    from paragen.models.exported import releasing_memory

    reranker_runner = reranked.generator.reranker.model.runner
    with releasing_memory():
        assert reranker_runner.run_options is not None
    assert reranker_runner.run_options is None
    nat = tmp_path / "glat-onnx"
    assert main(["export", "--model", str(trained / "glat"), "--format", "onnx",
                 "--output", str(nat)]) == 0
    with pytest.raises(ConfigError, match="holds an exported nat model; a reranker is an AR"):
        load_reranker(str(nat), ids.pad_id, "task.generator.reranker")
    with pytest.raises(ConfigError, match="holds GLAT; a reranker is an AR"):
        load_reranker(str(trained / "glat"), ids.pad_id, "task.generator.reranker")


def test_exported_folder_is_self_contained(trained, test_sources, tmp_path):
    """generate reads nothing outside the folder: move it and delete the checkpoints' copy."""
    import shutil

    exported = tmp_path / "glat-onnx"
    assert main(["export", "--model", str(trained / "glat"), "--format", "onnx",
                 "--output", str(exported)]) == 0
    expected = decode(str(exported), test_sources)[2]
    moved = tmp_path / "elsewhere"
    shutil.move(str(exported), moved)
    source_copy = tmp_path / "glat-copy"
    shutil.copytree(trained / "glat", source_copy)
    (source_copy / "tokenizer.model").unlink()
    src_file, out_file = tmp_path / "in.de", tmp_path / "out.en"
    src_file.write_text("\n".join(test_sources) + "\n", encoding="utf-8")
    assert main(["generate", "--model", str(moved), "--input", str(src_file),
                 "--output", str(out_file)]) == 0
    assert out_file.read_text(encoding="utf-8").splitlines() == expected
    ref_file = tmp_path / "ref.en"
    ref_file.write_text("\n".join(expected) + "\n", encoding="utf-8")
    assert main(["evaluate", "--model", str(moved), "--input", str(src_file),
                 "--reference", str(ref_file)]) == 0
    # and the HTTP server runs it
    from fastapi.testclient import TestClient

    from paragen.serving.app import create_app

    task = load_trained_task(str(moved), "infer")
    with TestClient(create_app(task, "glat-onnx")) as client:
        reply = client.post("/v1/generate", json={"inputs": test_sources[:3]})
        assert reply.status_code == 200
        assert reply.json()["outputs"] == task.translate(test_sources[:3])


def test_export_refuses_to_overwrite_other_folders_and_reports_bad_manifests(
        trained, tmp_path, capsys):
    other = tmp_path / "not-an-export"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["export", "--model", str(trained / "ar"), "--format", "onnx",
                 "--output", str(other)]) != 0
    assert "is not an exported model folder" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]

    broken = tmp_path / "broken"
    assert main(["export", "--model", str(trained / "ar"), "--format", "onnx",
                 "--output", str(broken)]) == 0
    manifest = json.loads((broken / "export.json").read_text())
    (broken / "export.json").write_text(json.dumps({**manifest, "cache_layout": None}))
    # an AR export whose step graph took one packed cache tensor (an earlier version's)
    assert main(["generate", "--model", str(broken), "--input", "/dev/null"]) != 0
    assert "keeps its cache in one packed tensor" in capsys.readouterr().err
    del manifest["graphs"]
    (broken / "export.json").write_text(json.dumps(manifest))
    assert main(["generate", "--model", str(broken), "--input", "/dev/null"]) != 0
    assert "export.json: key 'graphs' missing" in capsys.readouterr().err


def test_int8_onnx_export_is_smaller_and_decodes(trained, test_sources, tmp_path):
    for name, extra in (("fp32", []), ("int8", ["--quantize", "int8"])):
        assert main(["export", "--model", str(trained / "glat"), "--format", "onnx",
                     "--output", str(tmp_path / name), *extra]) == 0
    assert json.loads((tmp_path / "int8" / "export.json").read_text())["quantized"] == "int8"
    for graph in ("encoder.onnx", "decoder.onnx"):
        assert (tmp_path / "int8" / graph).stat().st_size < (tmp_path / "fp32" / graph).stat().st_size
    tokens, _, text = decode(str(tmp_path / "int8"), test_sources)
    reference = decode(str(tmp_path / "fp32"), test_sources)[0]
    assert len(text) == SENTENCES and tokens.shape[0] == SENTENCES
    # int8 weights perturb the logits a little: most slots keep their token
    width = min(tokens.size(1), reference.size(1))
    assert (tokens[:, :width] == reference[:, :width]).float().mean() > 0.5


def test_exported_nat_refuses_refinement_passes(trained, tmp_path):
    exported = tmp_path / "glat-ts"
    assert main(["export", "--model", str(trained / "glat"), "--format", "torchscript",
                 "--output", str(exported)]) == 0
    with pytest.raises(ConfigError, match="task.generator.refine_steps"):
        load_trained_task(str(exported), "infer", ["task.generator.refine_steps=1"])


@pytest.mark.slow
def test_a_model_trained_in_bf16_exports_float32_graphs(small_corpus, test_sources, tmp_path):
    """`env.precision: bf16` is stored with the model; the export still traces (and
    quantizes) float32 weights, and its folder decodes in float32 like the checkpoint does."""
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "ar", max_steps=1)
    config["env"] = {**config.get("env", {}), "precision": "bf16"}
    assert main(["train", "--config", write_config(config, tmp_path / "ar.yaml")]) == 0
    exported = tmp_path / "ar-onnx"
    assert main(["export", "--model", str(tmp_path / "ar"), "--format", "onnx",
                 "--output", str(exported)]) == 0
    manifest = json.loads((exported / "export.json").read_text())
    assert manifest["config"]["env"]["precision"] == "fp32"
    ref_tokens, _, _ = decode(str(tmp_path / "ar"), test_sources, ["env.precision=fp32"],
                              beam=1)
    tokens, _, _ = decode(str(exported), test_sources, beam=1)
    assert torch.equal(tokens, ref_tokens)


@pytest.mark.slow
def test_onnx_attention_is_one_fused_node_unless_portable(trained, test_sources, tmp_path):
    """By default attention is onnxruntime's MultiHeadAttention node wherever it fits: the
    encoder's, a NAT decoder's, an AR step's self- and cross-attention, the block graph's
    cross-attention (its self-attention writes a scattered cache: standard operators).
    `--portable` writes standard operators only. All decode token for token as PyTorch."""
    import onnx

    def fused_nodes(folder, graphs):
        return {graph: sum(node.op_type == "MultiHeadAttention"
                           for node in onnx.load(str(folder / f"{graph}.onnx")).graph.node)
                for graph in graphs}

    layers = 1  # tiny_config: one encoder and one decoder layer
    for family, graphs, fused_counts, beam in (
            ("glat_ctc", ("encoder", "tokens"), (layers, 2 * layers), None),
            ("ar", ("encoder", "step", "block"), (layers, 2 * layers, layers), 4)):
        reference = decode(str(trained / family), test_sources, beam=beam)[0]
        for name, extra in (("fused", []), ("portable", ["--portable"])):
            folder = tmp_path / f"{family}-{name}"
            assert main(["export", "--model", str(trained / family), "--format", "onnx",
                         "--output", str(folder), *extra]) == 0
            manifest = json.loads((folder / "export.json").read_text())
            assert manifest["fused_attention"] == (name == "fused")
            expected = fused_counts if name == "fused" else (0,) * len(graphs)
            assert fused_nodes(folder, graphs) == dict(zip(graphs, expected))
            assert torch.equal(decode(str(folder), test_sources, beam=beam)[0], reference), name
    with pytest.raises(ConfigError, match="--portable applies to --format onnx"):
        from paragen.exporting.export import export_model

        export_model(str(trained / "ar"), "torchscript", str(tmp_path / "ts"), portable=True)


def test_ar_search_parts_split_a_decode_into_onnx_runtime_and_python(trained, test_sources,
                                                                      tmp_path):
    """`benchmarks/ar_search_parts.py` times the parts of an exported AR model's batch-1
    search; the parts add up to the whole, and greedy search has no beam parts."""
    import subprocess
    import sys
    from pathlib import Path

    exported = tmp_path / "ar-onnx"
    assert main(["export", "--model", str(trained / "ar"), "--format", "onnx",
                 "--output", str(exported)]) == 0
    sources = tmp_path / "in.de"
    sources.write_text("\n".join(test_sources[:8]) + "\n", encoding="utf-8")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "ar_search_parts.py"
    for beam in (4, 1):
        output = tmp_path / f"parts{beam}.json"
        subprocess.run([sys.executable, str(script), "--model", str(exported), "--input",
                        str(sources), "--beam", str(beam), "--rounds", "1", "--output",
                        str(output)], check=True, capture_output=True)
        [parts] = json.loads(output.read_text())["by_round"]
        total = parts.pop("total")
        assert all(ms >= 0 for ms in parts.values()) and parts["step"] > 0
        assert abs(sum(parts.values()) - total) < 0.01
        assert (parts["beam ranking"] > 0) == (beam > 1) == (parts["cache reorder"] > 0)
    refused = subprocess.run([sys.executable, str(script), "--model", str(trained / "ar"),
                              "--input", str(sources)], capture_output=True, text=True)
    assert refused.returncode != 0 and "expected an AR model exported to ONNX" in refused.stderr


def test_onnx_sessions_do_not_spin_unless_asked(trained, test_sources, tmp_path):
    """ONNX Runtime's worker threads spin between calls by default; paragen's sessions turn
    that off (Python runs between the calls), and `GraphRunner.spinning` turns it back on."""
    from paragen.models.exported import GraphRunner

    exported = tmp_path / "glat-onnx"
    assert main(["export", "--model", str(trained / "glat"), "--format", "onnx",
                 "--output", str(exported)]) == 0

    def spinning_entries():
        task = load_trained_task(str(exported), "infer", ["task.model.threads=2"])
        return {session.get_session_options().get_session_config_entry(
            "session.intra_op.allow_spinning") for session, _ in task.model.runner.graphs.values()}

    assert spinning_entries() == {"0"}
    GraphRunner.spinning = True
    try:
        assert spinning_entries() == {"1"}
    finally:
        GraphRunner.spinning = False
    # `benchmarks/onnx_spinning.py` times a setting both ways and leaves the default alone
    import subprocess
    import sys
    from pathlib import Path

    sources = tmp_path / "in.de"
    sources.write_text("\n".join(test_sources[:8]) + "\n", encoding="utf-8")
    output = tmp_path / "spinning.json"
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "onnx_spinning.py"
    subprocess.run([sys.executable, str(script), "--model", str(exported), "--input",
                    str(sources), "--only", "single", "--rounds", "1", "--repeats", "1",
                    "--output", str(output)], check=True, capture_output=True)
    rows = json.loads(output.read_text())["rows"]
    assert [row["onnx"] for row in rows] == ["no spinning", "spinning"]
    assert all(row["batch1_ms_median"] > 0 and row["batched_sentences_per_s"] > 0
               for row in rows)
