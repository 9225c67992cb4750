"""Fault injection against a real `paragen serve` stack (uvicorn on 127.0.0.1, real sockets).

32 clients for FAULT_SECONDS mix valid requests with malformed, oversized and abandoned ones
(connections closed before the answer is read, half-sent bodies, requests cancelled in
flight). A server that is only right one request at a time can still answer a client with
another client's sentences, lose its batcher to one poisoned batch, or log errors for
clients that hung up; so every valid answer must equal serial decoding (`task.translate`)
of the same inputs, no answer may be a 5xx, nothing may be logged at ERROR, and `/health`
must be green at the end.
"""
import asyncio
import json
import logging
import random
import socket
import threading
import time
from collections import Counter

import httpx
import pytest
import torch

from paragen.serving.app import create_app
from paragen.tasks.build import load_trained_task

FAULT_SECONDS = 20.0  # long enough for every kind of fault to meet every other
CLIENTS = 32
MAX_BODY = 64 * 1024
MAX_LENGTH = 32  # the model reads 31 source tokens; longer inputs are refused (413)
JSON = {"content-type": "application/json"}

# (body, headers, expected status): each is checked exactly, not just "some 4xx"
MALFORMED = [
    (b"[" * 20_000 + b"]" * 20_000, JSON, 400),
    (b'{"inputs": ["ok", "\\ud800"]}', JSON, 422),
    (b'{"inputs": ["\\xc3\\x28"]}', JSON, 400),
    (b'{"inputs": [' + b"9" * 5000 + b"]}", JSON, 400),
    (b'{"inputs": ["a"', JSON, 400),
    (b"", JSON, 400),
    (b'{"inputs": ["a"]}', {"content-type": "text/plain"}, 415),
    (b'{"inputs": ["a", 3]}', JSON, 422),
    (b'{"inputs": ["a"], "options": [1]}', JSON, 422),
    (b'{"inputs": "a"}', JSON, 422),
    (b'{"inputs": ["a", "b", "c", "d", "e"]}', JSON, 413),  # max_inputs is 4
    (b'{"inputs": ["' + b"x" * 500 + b'"]}', JSON, 413),  # max_input_chars is 400
    (json.dumps({"inputs": ["Ein Hund rennt. " * 12]}).encode(), JSON, 413),  # > 31 tokens
    (b'{"inputs": ["' + b"a" * MAX_BODY + b'"]}', JSON, 413),  # body over the limit
]


@pytest.fixture(scope="module")
def served(tiny_model, small_corpus):
    """A real server on an ephemeral port, and the expected (serially decoded) answers."""
    import uvicorn

    task = load_trained_task(str(tiny_model), "infer")
    task.max_length = MAX_LENGTH
    generator = torch.Generator().manual_seed(0)  # outputs that differ between inputs
    with torch.no_grad():
        for param in task.model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.3)
    lines = [line for line in open(small_corpus["valid"]["de"], encoding="utf-8").read()
             .splitlines() if len(task.src_tokenizer.encode(line)) < MAX_LENGTH - 1][:10]
    pool = lines + ["", "Ein Hund.", "🐶 läuft!", "a\u2028b"]
    expected = {line: task.translate([line])[0] for line in pool}  # serial decoding
    assert len(set(expected.values())) > len(pool) // 2

    app = create_app(task, "faults", max_inputs=4, max_input_chars=400,
                     max_body_bytes=MAX_BODY, max_wait_ms=10)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield {"port": port, "app": app, "expected": expected, "pool": pool}
    server.should_exit = True
    thread.join(timeout=10)


class Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(f"{record.name}: {record.getMessage()}")


async def raw_exchange(port: int, data: bytes, read: bool) -> int:
    """Send raw bytes; read the status line if `read`, else hang up at once. 0: no answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    status = 0
    try:
        writer.write(data)
        await writer.drain()
        if read:
            line = await asyncio.wait_for(reader.readline(), 60)
            status = int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else -1
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass
    return status


def http_request(body: bytes, length: int = None) -> bytes:
    return (b"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            b"\r\nContent-Length: " + str(len(body) if length is None else length).encode()
            + b"\r\n\r\n" + body)


async def client(n: int, port: int, expected, pool, stop_at: float, seen: Counter, problems):
    rng = random.Random(n)
    url = f"http://127.0.0.1:{port}/v1/generate"
    async with httpx.AsyncClient(timeout=60) as http:
        while time.perf_counter() < stop_at:
            kind = rng.choice(["valid"] * 5 + ["malformed"] * 2 + ["oversized", "abandoned",
                                                                    "cancelled"])
            inputs = rng.sample(pool, rng.randint(1, 4))
            want = [expected[line] for line in inputs]
            try:
                if kind == "valid" or kind == "cancelled":
                    call = http.post(url, json={"inputs": inputs})
                    if kind == "cancelled":  # the client gives up while the server works
                        try:
                            reply = await asyncio.wait_for(call, rng.uniform(0.001, 0.2))
                        except asyncio.TimeoutError:
                            seen["cancelled"] += 1
                            continue
                    else:
                        reply = await call
                    seen[reply.status_code] += 1
                    if reply.status_code != 200 or reply.json()["outputs"] != want:
                        problems.append(f"{inputs} -> {reply.status_code} {reply.text[:200]}")
                    seen["valid"] += 1
                elif kind == "malformed":
                    body, headers, status = rng.choice(MALFORMED)
                    reply = await http.post(url, content=body, headers=headers)
                    seen[reply.status_code] += 1
                    if reply.status_code != status or "error" not in reply.json():
                        problems.append(f"{body[:60]!r} -> {reply.status_code} (not {status})")
                elif kind == "oversized":  # 10 MB announced, 4 KB sent: refused unread
                    status = await raw_exchange(port, http_request(b"{" + b" " * 4096, 10 ** 7),
                                                read=True)
                    seen[status] += 1
                    if status != 413:
                        problems.append(f"announced 10 MB body -> {status} (not 413)")
                else:  # abandoned: a full request, or half a body, then hang up unread
                    body = json.dumps({"inputs": inputs}).encode()
                    data = http_request(body) if rng.random() < 0.5 else \
                        http_request(body[:len(body) // 2], len(body))
                    await raw_exchange(port, data, read=False)
                    seen["abandoned"] += 1
            except (httpx.TransportError, OSError) as err:
                problems.append(f"{kind}: {type(err).__name__}: {err}")


@pytest.mark.slow
def test_server_survives_malformed_oversized_and_abandoned_requests(served):
    port, expected, batcher = served["port"], served["expected"], served["app"].state.batcher
    errors = Errors()
    for name in ("uvicorn", "uvicorn.error", "paragen"):
        logging.getLogger(name).addHandler(errors)
    seen, problems = Counter(), []

    async def run():
        stop_at = time.perf_counter() + FAULT_SECONDS
        await asyncio.gather(*(client(n, port, expected, served["pool"], stop_at, seen,
                                      problems) for n in range(CLIENTS)))

    try:
        asyncio.run(run())
    finally:
        for name in ("uvicorn", "uvicorn.error", "paragen"):
            logging.getLogger(name).removeHandler(errors)
    print(f"traffic {dict(seen)}; batches {batcher.batches}, requests {batcher.requests}, "
          f"dropped unanswered {batcher.dropped}")
    assert problems == [], problems[:5]
    assert not [code for code in seen if isinstance(code, int) and code >= 500], seen
    assert errors.records == [], errors.records[:5]
    # every kind of traffic really happened, and valid requests were merged into batches
    assert seen["valid"] >= 50 and seen["abandoned"] >= 10 and seen["cancelled"] >= 5, seen
    assert all(seen[code] > 0 for code in (400, 413, 415, 422)), seen
    assert batcher.requests > batcher.batches
    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    deadline = time.time() + 10
    while batcher.queue.qsize() and time.time() < deadline:  # abandoned work drains
        time.sleep(0.1)
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()["queued"] == 0
    line = served["pool"][0]
    reply = httpx.post(f"http://127.0.0.1:{port}/v1/generate", json={"inputs": [line]},
                       timeout=30)
    assert reply.json() == {"outputs": [expected[line]]}
