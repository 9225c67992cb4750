"""Time one decoding step's attention: SDPA against `single_query_attention` (two batched
products), on the shapes of batched beam search with multi30k-small (1,000 rows, 4 heads,
head size 64, 8 and 20 keys, a padding mask as in cross-attention).

    python benchmarks/single_query_attention.py [--threads 2] \
        [--output benchmarks/results/single_query_attention.json]

Medians of 7 rounds of 50 calls each, after warm-up, the two variants alternating.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from paragen.modules.layers import single_query_attention


def per_call_ms(fn, calls: int = 50) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return 1e3 * (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="benchmarks/results/single_query_attention.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, heads, head_dim = 1000, 4, 64
    results = []
    for keys in (8, 20):
        q = torch.randn(rows, heads, 1, head_dim)
        k, v = torch.randn(rows, heads, keys, head_dim), torch.randn(rows, heads, keys, head_dim)
        mask = torch.ones(rows, 1, 1, keys, dtype=torch.bool)
        mask[::3, :, :, -2:] = False
        sdpa = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # noqa: E731
        ours = lambda: single_query_attention(q, k, v, mask)  # noqa: E731
        torch.testing.assert_close(ours(), sdpa(), atol=1e-5, rtol=1e-4)
        for fn in (sdpa, ours):
            per_call_ms(fn, 5)
        rounds = [(per_call_ms(sdpa), per_call_ms(ours)) for _ in range(7)]
        sdpa_ms = statistics.median(r[0] for r in rounds)
        ours_ms = statistics.median(r[1] for r in rounds)
        results.append({"keys": keys, "sdpa_ms": round(sdpa_ms, 3),
                        "two_products_ms": round(ours_ms, 3),
                        "speedup": round(sdpa_ms / ours_ms, 2)})
        print(results[-1])
    with open(args.output, "w") as f:
        json.dump({"command": " ".join(["python"] + sys.argv), "threads": args.threads,
                   "rows": rows, "heads": heads, "head_dim": head_dim,
                   "torch": torch.__version__, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
