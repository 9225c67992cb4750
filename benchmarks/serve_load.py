"""Load test of `paragen serve` on 127.0.0.1: C concurrent clients, single sentences, T seconds.

    python benchmarks/serve_load.py --model runs/multi30k-glat --clients 1 8 32 --seconds 30
    python benchmarks/serve_load.py --model runs/sst2 --input data/sst2/dev.tsv \
        --column sentence --serving dynamic --clients 1 32 --output F   # a classifier

For each model and client count it starts a server (dynamic batching on, then, unless
`--serving` says otherwise, off with `--max-tokens 1`, i.e. batch-1 serving), lets every
client send one input per request in a closed loop, and reports requests/s, p50/p95/p99
latency and errors. Any served task works: an answer counts when the server returns 200 with
one output. `--column` reads the inputs from that column of a TSV file with a header line
(SST-2, GLUE). Results go to `--output` with the command that made them. Traffic never leaves
the loopback interface, and every loop is bounded by `--seconds`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import httpx

# server set-ups (`--serving`): the label the results use and the options `paragen serve` gets
SERVING = {"dynamic": ("dynamic batching", []),
           "batch-1": ("batch-1", ["--max-tokens", "1", "--max-wait-ms", "0"])}


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


async def _client(port: int, sentences: List[str], offset: int, step: int, stop_at: float,
                  latencies: List[float], errors: List[int]) -> None:
    """One closed-loop client on a keep-alive HTTP/1.1 connection (raw asyncio streams: the
    load generator shares the 2 cores with the server, so it must cost as little as it can)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < stop_at:
            body = json.dumps({"inputs": [sentences[i % len(sentences)]]}).encode()
            started = time.perf_counter()
            writer.write(b"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
                length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                payload = json.loads(await reader.readexactly(length))
                ok = head.startswith(b"HTTP/1.1 200") and len(payload["outputs"]) == 1
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, KeyError,
                    StopIteration):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors[0] += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            i += step
    finally:
        writer.close()


def read_inputs(path: str, column: Optional[str]) -> List[str]:
    """The lines of `path`, or with `column` that column of a TSV file with a header line."""
    lines = open(path, encoding="utf-8").read().splitlines()
    if column is None:
        return lines
    header = lines[0].split("\t")
    if column not in header:
        sys.exit(f"{path}:1: no column {column!r} in the header ({', '.join(header)})")
    index = header.index(column)
    return [row.split("\t")[index] for row in lines[1:] if row]


def load(port: int, sentences: List[str], clients: int, seconds: float) -> Dict[str, Any]:
    latencies: List[float] = []
    errors = [0]

    async def run_all() -> float:
        began = time.perf_counter()
        stop_at = began + seconds
        await asyncio.gather(*(_client(port, sentences, n, clients, stop_at, latencies, errors)
                               for n in range(clients)))
        return time.perf_counter() - began

    elapsed = asyncio.run(run_all())
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {"clients": clients, "requests": len(latencies), "errors": errors[0],
            "requests_per_s": len(latencies) / elapsed, "p50_ms": 1e3 * quantiles[49],
            "p95_ms": 1e3 * quantiles[94], "p99_ms": 1e3 * quantiles[98]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--input", default="data/multi30k/test2016.de")
    parser.add_argument("--column", help="read this column of a TSV file with a header")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--serving", nargs="+", choices=list(SERVING),
                        default=list(SERVING), help="which server set-ups to measure")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--output", default="benchmarks/results/serve_load.json")
    args = parser.parse_args()
    sentences = read_inputs(args.input, args.column)
    rows = []
    for model in args.model:
        for mode, extra in (SERVING[name] for name in args.serving):
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
