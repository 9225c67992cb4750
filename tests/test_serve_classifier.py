"""`paragen serve` of sentence classifiers and regressors: the answers are the task's own
(`task.predict`), pairs come tab-separated, and every reliability rule of translation serving
holds (4xx for a client's mistake, 413 over the token limit, batch isolation)."""
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers import error_line

from paragen.cli import main
from paragen.errors import ConfigError
from paragen.serving.app import create_app
from paragen.tasks.build import load_trained_task


@pytest.fixture(scope="module")
def classifier(tiny_classifier):
    return load_trained_task(str(tiny_classifier), "infer")


@pytest.fixture(scope="module")
def dev_sentences(sst2):
    rows = Path(sst2["dev"]).read_text(encoding="utf-8").splitlines()[1:]
    return [row.split("\t")[0] for row in rows]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app):
    """`app` behind a real uvicorn server on 127.0.0.1; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def assert_same_answers(served, expected):
    """Labels equal; probabilities equal up to float noise (a merged batch pads differently)."""
    assert [row["label"] for row in served] == [row["label"] for row in expected]
    for got, want in zip(served, expected):
        assert list(got["probabilities"]) == list(want["probabilities"])
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)


def test_classifier_answers_are_the_tasks_and_limits_are_413(classifier, dev_sentences,
                                                             monkeypatch):
    from fastapi.testclient import TestClient

    sentences = dev_sentences[:12]
    with TestClient(create_app(classifier, "sst2")) as client:
        described = client.get("/v1/models").json()["models"][0]
        assert described == {"name": "sst2", "task": "SequenceClassificationTask",
                             "model": "SequenceClassifier", "text": ["sentence"],
                             "output_field": "label", "labels": ["0", "1"],
                             "max_input_tokens": 256 - 2, "long_inputs": "reject"}
        reply = client.post("/v1/generate", json={"inputs": sentences})
        assert reply.status_code == 200
        outputs = reply.json()["outputs"]
        assert outputs == classifier.predict(sentences)  # one request: the very same batch
        assert len({row["probabilities"]["1"] for row in outputs}) > len(sentences) // 2
        assert client.post("/v1/generate", json={"inputs": []}).json() == {"outputs": []}
        bad = client.post("/v1/generate", content=b'{"inputs": [',
                          headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]
        assert client.post("/v1/generate", json={"inputs": [1]}).status_code == 422

        monkeypatch.setattr(classifier, "max_length", 12)  # 10 text tokens
        long = dev_sentences[0] + " " + dev_sentences[1]
        tokens = len(classifier.tokenizer.encode(long))
        reply = client.post("/v1/generate", json={"inputs": ["fine", long]})
        assert reply.status_code == 413 and reply.json()["error"] == (
            f"inputs[1] is {tokens} tokens long; this model reads at most 10 tokens per "
            f"input (shorten it)")
        assert client.get("/v1/models").json()["models"][0]["max_input_tokens"] == 10


def test_pair_regressor_reads_tab_separated_pairs(tiny_pair_regressor):
    from fastapi.testclient import TestClient

    task = load_trained_task(str(tiny_pair_regressor), "infer")
    pairs = ["a good film\tdull", "terrible\tgreat fun", "\tonly the second"]
    app = create_app(task, "pairs")
    with TestClient(app) as client:
        described = client.get("/v1/models").json()["models"][0]
        assert described["task"] == "SequenceRegressionTask" and "labels" not in described
        assert described["text"] == ["first", "second"] and described["max_input_tokens"] == 21
        reply = client.post("/v1/generate", json={"inputs": pairs})
        assert reply.status_code == 200 and reply.json()["outputs"] == task.predict(pairs)
        assert all(isinstance(row["value"], float) for row in reply.json()["outputs"])
        served = app.state.batcher.requests
        for line, count in (("no tab here", 1), ("a\tb\tc", 3)):
            reply = client.post("/v1/generate", json={"inputs": [pairs[0], line]})
            assert reply.status_code == 422 and reply.json()["error"] == (
                f"inputs[1]: expected two texts separated by a tab (first and second), "
                f"got {count}")
        long = "a wonderful, moving and very funny film " * 3
        tokens = sum(len(task.tokenizer.encode(text)) for text in (long, "dull"))
        reply = client.post("/v1/generate", json={"inputs": [f"{long}\tdull"]})
        assert reply.status_code == 413 and f"is {tokens} tokens long" in reply.json()["error"]
        assert app.state.batcher.requests == served  # refused before reaching the model


def test_one_failing_request_leaves_its_batch_neighbours_answered(classifier, dev_sentences,
                                                                  monkeypatch):
    sentences = dev_sentences[:15]
    expected = {sentence: classifier.predict([sentence])[0] for sentence in sentences}
    predict, calls = classifier.predict, []

    def flaky(lines, first_line=1):
        calls.append(list(lines))
        if "boom" in lines:
            raise RuntimeError("model exploded")
        return predict(lines, first_line)

    monkeypatch.setattr(classifier, "predict", flaky)
    app = create_app(classifier, "sst2", max_wait_ms=500)
    with running(app) as url:
        def call(text):
            reply = httpx.post(f"{url}/v1/generate", json={"inputs": [text]}, timeout=60)
            return reply.status_code, reply.json()

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, sentences + ["boom"]))
        assert any("boom" in call and len(call) > 1 for call in calls)  # it had neighbours
        assert app.state.batcher.failures == 1
        status, body = results[-1]
        assert status == 500 and "model exploded" in body["error"]
        assert all(status == 200 for status, _ in results[:-1])
        assert_same_answers([body["outputs"][0] for _, body in results[:-1]],
                            [expected[sentence] for sentence in sentences])
        assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_serve_refuses_translation_options_for_a_classifier(tiny_classifier, classifier,
                                                            capsys):
    with pytest.raises(ConfigError, match="cannot join the answers to an input's pieces"):
        create_app(classifier, "sst2", long_inputs="split")
    model = str(tiny_classifier)
    port = str(free_port())
    assert main(["serve", "--model", model, "--port", port, "--long-inputs", "split"]) == 2
    assert error_line(capsys) == (f"error: {model}: holds a SequenceClassificationTask; "
                                  f"--long-inputs split works with tasks that have join_pieces "
                                  f"(paragen.interfaces.PieceJoiner)")
    assert main(["serve", "--model", model, "--port", port, "--beam", "2"]) == 2
    assert "--beam applies to translation models" in error_line(capsys)


def test_paragen_serve_runs_a_classifier_folder(tiny_classifier, classifier, dev_sentences):
    """The command itself: the folder's task is accepted and answers over HTTP."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen([sys.executable, "-m", "paragen.cli", "serve", "--model",
                               str(tiny_classifier), "--port", str(port)], env=env,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and server.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert server.poll() is None, server.stderr.read().decode()
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/generate",
                           json={"inputs": dev_sentences[:4]}, timeout=30)
        assert reply.status_code == 200
        assert_same_answers(reply.json()["outputs"], classifier.predict(dev_sentences[:4]))
    finally:
        server.terminate()
        server.wait(timeout=30)
