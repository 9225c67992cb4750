"""Load test of `paragen serve` on 127.0.0.1: C concurrent clients, single sentences, T seconds.

    python benchmarks/serve_load.py --model runs/multi30k-glat --clients 1 8 32 --seconds 30

For each model and client count it starts a server (dynamic batching on, then off with
`--max-batch-tokens 1`, i.e. batch-1 serving), lets every client send one test sentence per
request in a closed loop, and reports requests/s, p50/p95/p99 latency and errors. Results go
to benchmarks/results/serve_load.json. Traffic never leaves the loopback interface, and every
loop is bounded by `--seconds`.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, extra: List[str]) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "paragen.cli", "serve", "--model", model,
                                "--port", str(port), *extra], stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"server for {model} did not start")


def load(port: int, sentences: List[str], clients: int, seconds: float) -> Dict[str, Any]:
    latencies: List[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(offset: int) -> None:
        with httpx.Client(timeout=60) as http:
            i = offset
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    ok = http.post(f"http://127.0.0.1:{port}/v1/generate",
                                   json={"inputs": [sentences[i % len(sentences)]]}
                                   ).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors[0] += 1
                i += clients

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {"clients": clients, "requests": len(latencies), "errors": errors[0],
            "requests_per_s": len(latencies) / elapsed, "p50_ms": 1e3 * quantiles[49],
            "p95_ms": 1e3 * quantiles[94], "p99_ms": 1e3 * quantiles[98]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--input", default="data/multi30k/test2016.de")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--output", default="benchmarks/results/serve_load.json")
    args = parser.parse_args()
    sentences = open(args.input, encoding="utf-8").read().splitlines()
    rows = []
    for model in args.model:
        for mode, extra in (("dynamic batching", []),
                            ("batch-1", ["--max-batch-tokens", "1", "--max-wait-ms", "0"])):
            port = free_port()
            server = start_server(model, port, extra)
            try:
                for clients in args.clients:
                    row = {"model": model, "serving": mode,
                           **load(port, sentences, clients, args.seconds)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                server.terminate()
                server.wait(timeout=30)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"command": "python " + " ".join(sys.argv), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
