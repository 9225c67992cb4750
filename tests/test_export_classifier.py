"""`paragen export` of sentence classifiers and regressors: one graph (ids [, segment ids] →
logits) that computes what the PyTorch model computes, at any batch size and length, and runs
wherever a model folder does (generate, evaluate, serve)."""
import json
from pathlib import Path

import pytest
import torch

from paragen.cli import main
from paragen.errors import DataError
from paragen.tasks.build import load_trained_task


@pytest.fixture(scope="module")
def dev(sst2):
    rows = Path(sst2["dev"]).read_text(encoding="utf-8").splitlines()[1:]
    return [row.split("\t")[0] for row in rows]


def logits(task, lines):
    """(N, outputs) logits of the task's model for `lines`, as one padded batch."""
    split = task.encode(task.input_columns(lines, 1))
    batch = task.collate(list(range(len(lines))), split)
    with torch.no_grad():
        return task.model(batch["src"], batch.get("segments"))["logits"]


def jsonl(model, source, output):
    assert main(["generate", "--model", model, "--input", str(source), "--output", str(output),
                 "--format", "jsonl"]) == 0
    return [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_classifier_computes_the_same_logits_and_labels(tiny_classifier, sst2, dev,
                                                                 tmp_path, fmt, capsys):
    exported = tmp_path / fmt
    assert main(["export", "--model", str(tiny_classifier), "--format", fmt,
                 "--output", str(exported)]) == 0
    manifest = json.loads((exported / "export.json").read_text())
    assert (manifest["family"], manifest["graphs"]) == ("classifier", ["classifier"])
    assert (manifest["num_outputs"], manifest["segments"]) == (2, False)
    reference = load_trained_task(str(tiny_classifier), "infer")
    task = load_trained_task(str(exported), "infer")
    assert task.labels == ["0", "1"]
    # the graph was traced on 3 rows of 7 ids: other batch sizes and lengths run as well
    for lines in (dev, dev[:1], dev[5:7]):
        expected = logits(reference, lines)
        assert expected.shape[0] == len(lines)
        assert torch.allclose(logits(task, lines), expected, atol=1e-4)
    if fmt == "onnx":
        session = task.model.runner.graphs["classifier"][0]
        assert [i.shape for i in session.get_inputs()] == [["batch", "src_len"]]

    source = tmp_path / "dev.txt"
    source.write_text("\n".join(dev) + "\n", encoding="utf-8")
    served, original = (jsonl(str(folder), source, tmp_path / f"{name}.jsonl")
                        for name, folder in (("exported", exported),
                                             ("pytorch", tiny_classifier)))
    assert [row["label"] for row in served] == [row["label"] for row in original]
    assert len({row["label"] for row in original}) == 2  # both labels occur: a real comparison
    for got, want in zip(served, original):
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-4)

    capsys.readouterr()
    assert main(["evaluate", "--model", str(exported), "--input", sst2["dev"]]) == 0
    assert main(["evaluate", "--model", str(tiny_classifier), "--input", sst2["dev"]]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines()
               if line.startswith("test accuracy")]
    assert len(printed) == 2 and printed[0] == printed[1]


def test_exported_pair_regressor_takes_segment_ids_and_serves(tiny_pair_regressor, tmp_path):
    from fastapi.testclient import TestClient

    from paragen.serving.app import create_app

    exported = tmp_path / "pairs"
    assert main(["export", "--model", str(tiny_pair_regressor), "--format", "onnx",
                 "--output", str(exported)]) == 0
    task = load_trained_task(str(exported), "infer")
    session = task.model.runner.graphs["classifier"][0]
    assert [i.name for i in session.get_inputs()] == ["src", "segments"]
    pairs = ["a good film\tdull", "terrible\tgreat fun", "a wonderful, moving film\tyes",
             "the plot is thin and the acting is wooden throughout\tbut the songs are fine"]
    assert task.input_tokens(pairs)[3] > task.max_input_tokens  # cut by encode, traced too
    reference = load_trained_task(str(tiny_pair_regressor), "infer")
    assert torch.allclose(logits(task, pairs), logits(reference, pairs), atol=1e-4)
    with TestClient(create_app(task, "pairs-onnx")) as client:
        reply = client.post("/v1/generate", json={"inputs": pairs[:3]})  # the last is too long
        assert reply.status_code == 200 and reply.json()["outputs"] == task.predict(pairs[:3])

    manifest = json.loads((exported / "export.json").read_text())
    manifest["segments"] = False  # a graph that does not match the task is refused
    (exported / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="the graph gives 1 outputs without segment ids; the "
                                        "task needs 1 with"):
        load_trained_task(str(exported), "infer")
