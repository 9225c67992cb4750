"""HTTP serving: the API contract, bad requests, long inputs, failures, option checks, and
dynamic batching under load. (The 20-second fault-injection run is in test_serve_faults.py.)"""
import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

from paragen.cli import main
from paragen.serving.app import create_app
from paragen.serving.batcher import DynamicBatcher
from paragen.serving.pieces import split_to_fit
from paragen.tasks.build import load_trained_task


@pytest.fixture(scope="module")
def trained(tiny_model):
    return str(tiny_model)


@pytest.fixture(scope="module")
def task(trained):
    return load_trained_task(trained, "infer")


@pytest.fixture(scope="module")
def varied_task(trained):
    """The 5-step model answers almost every input alike; seeded noise on its weights makes
    the outputs differ between inputs, so comparing them can catch a misplaced answer."""
    task = load_trained_task(trained, "infer")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in task.model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.3)
    return task


def set_max_length(monkeypatch, task, value: int) -> int:
    """The task's max length (`maxlen`, to be renamed `max_length`); returns the token limit."""
    monkeypatch.setattr(task, "max_length" if hasattr(task, "max_length") else "maxlen", value)
    return value - 1


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


JSON = {"content-type": "application/json"}
# (what is sent, expected status, a phrase the one-line error must contain)
MALFORMED = [
    (dict(content=b"[" * 30_000 + b"]" * 30_000, headers=JSON), 400, "nested too deeply"),
    (dict(content=b'{"inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}", headers=JSON), 400,
     "nested too deeply"),
    (dict(content=b'{"inputs": ["ok", "a\\ud800b"]}', headers=JSON), 422, "lone surrogate"),
    (dict(content=b'{"inputs": ["\\udfff"]}', headers=JSON), 422, "inputs[0]"),
    (dict(content=b'{"inputs": ["a"], "\\udc00": 1}', headers=JSON), 422, "unknown key"),
    (dict(content=b'{"inputs": ["\xff\xfe"]}', headers=JSON), 400, "not UTF-8"),
    (dict(content=b'{"inputs": [' + b"1" * 5000 + b"]}", headers=JSON), 400, "malformed JSON"),
    (dict(content=b"", headers=JSON), 400, "empty body"),
    (dict(content=b"  \n", headers=JSON), 400, "empty body"),
    (dict(content=b'{"inputs": ["a"]}', headers={"content-type": "text/plain"}), 415,
     "application/json"),
    (dict(content=b'{"inputs": ["a"]}'), 415, "application/json"),
    (dict(data={"inputs": "a"}), 415, "application/json"),  # a form, as `curl -d` sends
    (dict(content=b'{"inputs": ["a"]}', headers={
        "content-type": "application/json; charset=latin-1"}), 415, "UTF-8"),
    (dict(content=b'{"inputs": ["' + b"a" * 70_000 + b'"]}', headers=JSON), 413, "65536"),
    (dict(content=iter([b'{"inputs": ["'] + [b"a" * 8192] * 10 + [b'"]}']), headers=JSON), 413,
     "65536"),  # chunked: no Content-Length to refuse it by
    (dict(json=["a"]), 422, "JSON list"),
    (dict(json="a"), 422, "JSON str"),
    (dict(content=b"null", headers=JSON), 422, "JSON NoneType"),
    (dict(json={"inputs": ["a", None]}), 422, "inputs[1] is a NoneType"),
    (dict(json={"inputs": [["a"]]}), 422, "inputs[0] is a list"),
    (dict(json={"inputs": [{"text": "a"}]}), 422, "inputs[0] is a dict"),
    (dict(json={"inputs": {"0": "a"}}), 422, '"inputs" must be a list'),
    (dict(json={"options": {}}), 422, '"inputs" must be a list'),
    (dict(json={"inputs": ["a"], "options": []}), 422, '"options" must be a JSON object'),
    (dict(json={"inputs": ["a"], "options": "fast"}), 422, '"options" must be a JSON object'),
    (dict(json={"inputs": ["a"], "options": None}), 422, '"options" must be a JSON object'),
    (dict(json={"inputs": ["a"], "options": {"beam": 4}}), 422, "unsupported option"),
    (dict(json={"inputs": ["a"], "input": ["b"]}), 422, "unknown key"),
]


def test_malformed_bodies_are_4xx_with_one_line_and_the_server_keeps_serving(task):
    from fastapi.testclient import TestClient

    with TestClient(create_app(task, "tiny", max_body_bytes=65536)) as client:
        for request, status, phrase in MALFORMED:
            reply = client.post("/v1/generate", **request)
            assert reply.status_code == status and phrase in reply.json()["error"], \
                (phrase, reply.status_code, reply.text[:200])
            assert "\n" not in reply.json()["error"] and len(reply.json()["error"]) < 300
        ok = client.post("/v1/generate", json={"inputs": ["Ein Hund.", "a\u2028b\x00", "🐶"]})
        assert ok.status_code == 200 and len(ok.json()["outputs"]) == 3
        assert client.get("/health").json()["status"] == "ok"


def test_long_inputs_are_refused_with_the_limit_in_tokens(task, monkeypatch):
    """The task would cut a long input to its max length and answer for the first words only."""
    from fastapi.testclient import TestClient

    limit = set_max_length(monkeypatch, task, 24)
    long = "Ein Hund läuft über die Wiese, und eine Katze schläft im Garten. " * 6
    tokens = len(task.src_tokenizer.encode(long))
    assert tokens > limit
    with TestClient(create_app(task, "tiny")) as client:
        assert client.get("/v1/models").json()["models"][0]["max_input_tokens"] == limit
        reply = client.post("/v1/generate", json={"inputs": ["Ein Hund.", long]})
        assert reply.status_code == 413
        assert f"inputs[1] is {tokens} tokens long" in reply.json()["error"]
        assert f"at most {limit} tokens" in reply.json()["error"]
        assert client.post("/v1/generate", json={"inputs": ["Ein Hund."]}).status_code == 200


def test_split_mode_translates_long_inputs_in_pieces_that_fit(varied_task, monkeypatch):
    from fastapi.testclient import TestClient

    task = varied_task
    limit = set_max_length(monkeypatch, task, 24)
    long = ("Ein Hund läuft über die Wiese, und eine Katze schläft im Garten. "
            "Zwei Männer spielen Fußball. " * 3 + "Ein" + "sehrlanges" * 12 + "Wort.")
    count = lambda text: len(task.src_tokenizer.encode(text))  # noqa: E731
    pieces = split_to_fit(long, count, limit)
    assert len(pieces) > 3 and all(count(piece) <= limit for piece in pieces)
    assert "".join(pieces).replace(" ", "") == long.replace(" ", "")  # nothing lost
    assert "Zwei Männer spielen Fußball." in pieces  # sentence ends are the preferred cuts
    short = "Eine Frau liest."
    expected = " ".join(out.strip() for out in task.translate(pieces) if out.strip())
    assert expected.strip()
    with TestClient(create_app(task, "tiny", long_inputs="split")) as client:
        reply = client.post("/v1/generate", json={"inputs": [short, long, short]})
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"outputs": [task.translate([short])[0], expected,
                                            task.translate([short])[0]], "split": [1]}


def test_split_to_fit_prefers_sentences_then_clauses_then_words_then_characters():
    count = lambda text: len(text.strip())  # noqa: E731  one token a character, like spm's
    assert split_to_fit("Aa bb. Cc dd. Ee ff.", count, 14) == ["Aa bb. Cc dd.", "Ee ff."]
    assert split_to_fit("Aa bb, cc dd, ee ff", count, 13) == ["Aa bb, cc dd,", "ee ff"]
    assert split_to_fit("aaaa bbbb cccc", count, 9) == ["aaaa bbbb", "cccc"]
    assert split_to_fit("犬が走る。猫が寝る。", count, 6) == ["犬が走る。", "猫が寝る。"]
    assert split_to_fit("x" * 10, count, 3) == ["xx", "xxx", "xx", "xxx"]
    assert split_to_fit("short", count, 10) == ["short"]

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


def test_without_a_running_batcher_health_is_red_and_requests_get_503(task):
    """No lifespan startup, so no batcher worker: requests must not wait forever."""
    from fastapi.testclient import TestClient

    client = TestClient(create_app(task, "tiny"))  # not entered: the lifespan never runs
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "down"
    reply = client.post("/v1/generate", json={"inputs": ["Ein Hund."]})
    assert reply.status_code == 503 and "not running" in reply.json()["error"]

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


def test_one_failing_request_in_a_merged_batch_fails_alone_and_the_batcher_goes_on():
    """One batch mixes clients: a request the model cannot take must not fail the others."""
    from paragen.serving.batcher import Unavailable

    calls = []

    def translate(lines):
        calls.append(list(lines))
        if "boom" in lines:
            raise RuntimeError("model exploded")
        return [line.upper() for line in lines[:-1 if "drop" in lines else None]]

    async def scenario():
        batcher = DynamicBatcher(translate, len, max_wait_ms=200)
        batcher.start()
        merged = await asyncio.gather(batcher.submit(["a", "b"]), batcher.submit(["boom"]),
                                      batcher.submit(["c"]), batcher.submit(["drop", "e"]),
                                      return_exceptions=True)
        first = asyncio.ensure_future(batcher.submit(["x"]))
        gone = asyncio.ensure_future(batcher.submit(["gone"]))
        await asyncio.sleep(0.02)
        gone.cancel()  # its client went away before the batch ran
        after = await first
        alive = batcher.alive
        await batcher.stop()
        with pytest.raises(Unavailable):
            await batcher.submit(["late"])
        return merged, after, alive, batcher

    merged, after, alive, batcher = asyncio.run(scenario())
    assert calls[0] == ["a", "b", "boom", "c", "drop", "e"]  # merged into one model call
    assert merged[0] == ["A", "B"] and merged[2] == ["C"]
    assert isinstance(merged[1], RuntimeError) and "exploded" in str(merged[1])
    assert isinstance(merged[3], RuntimeError) and "1 outputs for 2 inputs" in str(merged[3])
    assert after == ["X"] and alive and not batcher.alive
    assert not any("gone" in call for call in calls) and batcher.failures == 2


@pytest.mark.parametrize("argv, phrase", [
    (["--port", "99999"], "--port 99999: must be between 1 and 65535"),
    (["--port", "0"], "--port 0:"),
    (["--port", "-1"], "--port -1:"),
    (["--host", "local host"], "--host 'local host'"),
    (["--host", ""], "--host ''"),
    (["--max-inputs", "0"], "--max-inputs 0:"),
    (["--max-tokens", "-5"], "--max-tokens -5:"),
    (["--max-input-chars", "0"], "--max-input-chars 0:"),
    (["--max-body-bytes", "0"], "--max-body-bytes 0:"),
    (["--max-wait-ms", "-1"], "--max-wait-ms -1.0:"),
    (["--max-wait-ms", "nan"], "--max-wait-ms nan:"),
    (["--max-wait-ms", "inf"], "--max-wait-ms inf:"),
    (["--beam", "0"], "--beam 0: must be between 1 and 64"),
    (["--beam", "65"], "--beam 65:"),
])
def test_serve_refuses_bad_options_in_one_line(argv, phrase, capsys, tmp_path):
    assert main(["serve", "--model", str(tmp_path / "no-model"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and phrase in err, err


def test_serve_reports_a_busy_port_before_loading_the_model(capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--model", str(tmp_path / "no-model"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and \
        err.count("\n") == 1, err
