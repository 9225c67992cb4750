"""HTTP serving: the API contract, bad requests, failures, and dynamic batching under load."""
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from helpers import tiny_config, write_config
from paragen.cli import main
from paragen.serving.app import create_app
from paragen.tasks.build import load_trained_task


@pytest.fixture(scope="module")
def task(small_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         root / "run", max_steps=5)
    assert main(["train", "--config", write_config(config, root / "c.yaml")]) == 0
    return load_trained_task(str(root / "run"), "infer")


def test_api_contract_and_bad_requests(task):
    from fastapi.testclient import TestClient

    with TestClient(create_app(task, "tiny", max_inputs=3, max_input_chars=50)) as client:
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/v1/models").json()["models"][0]["source"] == "de"
        ok = client.post("/v1/generate", json={"inputs": ["Ein Hund.", "Zwei Katzen."]})
        assert ok.status_code == 200 and len(ok.json()["outputs"]) == 2
        assert client.post("/v1/generate", json={"inputs": []}).json() == {"outputs": []}
        bad = client.post("/v1/generate", content=b'{"inputs": [', headers={
            "content-type": "application/json"})
        assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]
        assert client.post("/v1/generate", json={"inputs": "x"}).status_code == 422
        assert client.post("/v1/generate", json={"inputs": [1]}).status_code == 422
        assert client.post("/v1/generate", json={"inputs": ["a"], "options": {"x": 1}}
                           ).status_code == 422
        assert client.post("/v1/generate", json={"inputs": ["a"] * 4}).status_code == 413
        assert client.post("/v1/generate", json={"inputs": ["a" * 51]}).status_code == 413


def test_a_failing_batch_is_a_500_and_the_server_survives(task, monkeypatch):
    from fastapi.testclient import TestClient

    translate = task.translate

    def flaky(lines):
        if "boom" in lines:
            raise RuntimeError("model exploded")
        return translate(lines)

    monkeypatch.setattr(task, "translate", flaky)
    with TestClient(create_app(task, "tiny")) as client:
        failed = client.post("/v1/generate", json={"inputs": ["boom"]})
        assert failed.status_code == 500 and "model exploded" in failed.json()["error"]
        assert client.post("/v1/generate", json={"inputs": ["Ein Hund."]}).status_code == 200


def test_concurrent_requests_are_merged_into_batches(task):
    import uvicorn

    app = create_app(task, "tiny", max_wait_ms=50)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        sentences = [f"Ein Mann mit {n} Hunden." for n in range(16)]
        single = {s: httpx.post(f"http://127.0.0.1:{port}/v1/generate",
                                json={"inputs": [s]}, timeout=30).json()["outputs"][0]
                  for s in sentences[:2]}
        before = app.state.batcher.batches

        def call(sentence):
            response = httpx.post(f"http://127.0.0.1:{port}/v1/generate",
                                  json={"inputs": [sentence]}, timeout=60)
            return response.status_code, response.json()["outputs"]

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, sentences))
        assert all(code == 200 and len(out) == 1 for code, out in results)
        assert app.state.batcher.batches - before < len(sentences)  # requests were merged
        for sentence, (_, out) in zip(sentences[:2], results[:2]):
            assert out[0] == single[sentence]  # and split back to the right client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
