"""A markdown table of a `paragen bench` result: one line per system (each at its fastest
thread count), BLEU when the run was scored with --reference, and speed ratios against a
baseline row measured in the same run.

    python benchmarks/bench_table.py benchmarks/results/decode_speed_nat_family_amx.json \
        --baseline "AR beam4" [--baseline "CTranslate2 int8 greedy"]
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List

from paragen.commands.plot import fastest_per_system, model_label


def fastest(rows: List[Dict[str, Any]], system: str, model: str, key: str) -> Dict[str, Any]:
    """The row of (system, model) with the most sentences/s on `key` over thread counts."""
    return next(r for r in fastest_per_system(rows, key)
                if r["system"] == system and r["model"] == model)


def table(result: Dict[str, Any], baselines: List[str]) -> str:
    rows = result["rows"]
    systems = list(dict.fromkeys((r["system"], r["model"]) for r in rows))
    missing = [b for b in baselines if b not in {s for s, _ in systems}]
    if missing:
        raise SystemExit(f"--baseline {missing[0]!r}: no such system in this result "
                         f"(it has: {', '.join(dict.fromkeys(s for s, _ in systems))})")
    reference = {b: {key: fastest(rows, b, next(m for s, m in systems if s == b), key)
                     for key in ("batch1", "batched")} for b in baselines}
    header = ["system", "model", "BLEU", "batch 1 ms/sent (threads)"]
    header += [f"× {b}" for b in baselines]
    header += ["batched sent/s (threads)"] + [f"× {b}" for b in baselines]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system, model in systems:
        one, many = fastest(rows, system, model, "batch1"), fastest(rows, system, model, "batched")
        bleu = f"{one['bleu']:.2f}" if "bleu" in one else "—"
        cells = [system, model_label(model), bleu,
                 f"{one['batch1']['ms_per_sentence_median']:.2f} ({one['threads']})"]
        cells += [f"{reference[b]['batch1']['batch1']['ms_per_sentence_median'] / one['batch1']['ms_per_sentence_median']:.2f}"
                  for b in baselines]
        cells += [f"{many['batched']['sentences_per_s']:.1f} ({many['threads']})"]
        cells += [f"{many['batched']['sentences_per_s'] / reference[b]['batched']['batched']['sentences_per_s']:.2f}"
                  for b in baselines]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", help="JSON written by `paragen bench`")
    parser.add_argument("--baseline", action="append", default=[],
                        help="system label the ratios are taken against (repeatable); a ratio "
                             "above 1 means faster than the baseline")
    args = parser.parse_args()
    with open(args.result, encoding="utf-8") as f:
        result = json.load(f)
    print(table(result, args.baseline))
    print(f"\n{result['sentences']} sentences, {result['machine']}; `{result['command']}`")


if __name__ == "__main__":
    main()
