"""Speculative decoding against AR greedy search, in one run on one machine.

    python benchmarks/speculative.py --model AR_DIR --drafter NAT_DIR \\
        --input test.de --reference test.en [--block-size 0 4] [--relaxed 3:1.0] \\
        [--min-confidence 0.5] [--batch-size 32] [--rounds 3] [--limit N] \\
        --output results/speculative.json

Systems: AR greedy (the AR folder's length settings, GreedySearch), and SpeculativeGenerator
with the NAT drafter for every `--block-size`, re-drafting (a CTC drafter: re-aligning) and
keeping stale drafts, with each `--min-confidence` trimming of the blocks, and with each
`--relaxed TOP:TOLERANCE` acceptance. Protocol as
`paragen bench`: tokenization excluded; every system warmed up first; batch 1 feeds the
sentences one at a time (sentences/s over the set, median latency), batched sorts by length
into `--max-tokens` batches (of at most `--batch-size` sentences when given); each round
visits every system in turn and the numbers are medians over rounds.

Per system it also reports the lines that differ from greedy's output (batched and batch 1;
0 for exact acceptance), BLEU against the references, the mean tokens gained per sentence
and verification step with its histogram, and the AR and NAT passes per sentence. The JSON
records the command; the PNG beside it draws the histograms, and BLEU against speed ÷
greedy for every system (relaxed acceptance settings make a curve).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import torch

from paragen.commands.bench import decode, describe_machine
from paragen.datasets import read_lines
from paragen.generators import SpeculativeGenerator
from paragen.interfaces import Translator
from paragen.metrics.text import BLEU
from paragen.model_folder import stored_config
from paragen.models.loading import load_trained_model
from paragen.samplers import BucketSampler
from paragen.search.base import Search
from paragen.tasks.build import load_trained_task


def greedy_search(model: str) -> Dict[str, Any]:
    """GreedySearch with the length settings the AR folder decodes with."""
    stored = ((stored_config(model)["task"].get("generator") or {}).get("search") or {})
    lengths = {Search.renamed_keys.get(key, key): value for key, value in stored.items()}
    return {"class": "GreedySearch", **{key: lengths[key] for key in
                                        ("max_length_a", "max_length_b", "min_length")
                                        if key in lengths}}


def build_systems(task, drafter, search: Dict[str, Any], args) -> List[Tuple[str, Any]]:
    ids = {"bos_id": task.tgt_tokenizer.bos_id, "eos_id": task.tgt_tokenizer.eos_id,
           "pad_id": task.tgt_tokenizer.pad_id}

    def drafted(**options) -> SpeculativeGenerator:
        return SpeculativeGenerator(drafter, **{"block_size": args.block_size[0], **options},
                                    search=search, model=task.model, **ids)

    systems = [("greedy", task.generator)]
    for block in args.block_size:
        for redraft in (True,) if args.redraft_only else (True, False):
            name = f"spec k={block or 'all'}" + (" redraft" if redraft else " stale")
            systems.append((name, drafted(block_size=block, redraft=redraft)))
    first = f"spec k={args.block_size[0] or 'all'}"
    for confidence in args.min_confidence:
        systems.append((f"{first} redraft conf>={confidence}",
                        drafted(min_confidence=confidence)))
    for relaxed in args.relaxed:
        top, tolerance = relaxed.split(":")
        systems.append((f"spec relaxed top{top} tol{tolerance}",
                        drafted(accept_top=int(top), accept_tolerance=float(tolerance))))
    return [(name, generator.eval()) for name, generator in systems]


def batches_of(task, split: Dict[str, Any], max_tokens: int,
               max_sentences: Optional[int] = None) -> List[Dict[str, Any]]:
    sampler = BucketSampler(max_tokens=max_tokens, max_sentences=max_sentences, shuffle=False)
    return [task.collate(b, split) for b in sampler.batches(split["lengths"])]


def run_batched(task, batches: List[Dict[str, Any]], count: int) -> Tuple[float, List[List[int]]]:
    """Seconds for one pass over the batches, and the output ids in input order."""
    outputs: List[List[int]] = [[] for _ in range(count)]
    pad = task.tgt_tokenizer.pad_id
    started = time.perf_counter()
    for batch in batches:
        tokens = decode(task, batch["src"])
        for index, row in zip(batch["ids"].tolist(), tokens.tolist()):
            outputs[index] = [t for t in row if t != pad]
    return time.perf_counter() - started, outputs


def run_batch1(task, split: Dict[str, Any]) -> Tuple[List[float], List[List[int]]]:
    latencies, outputs = [], []
    pad = task.tgt_tokenizer.pad_id
    for i in range(len(split["src"])):
        src = task.collate([i], split)["src"]
        started = time.perf_counter()
        tokens = decode(task, src)
        latencies.append(time.perf_counter() - started)
        outputs.append([t for t in tokens[0].tolist() if t != pad])
    return latencies, outputs


def measure(task, generator, split, batches, count: int) -> Dict[str, Any]:
    task.generator = generator
    with torch.inference_mode():
        latencies, batch1_out = run_batch1(task, split)
        seconds, batched_out = run_batched(task, batches, count)
    return {"batch1": {"sentences_per_s": count / sum(latencies),
                       "ms_per_sentence_median": 1e3 * statistics.median(latencies)},
            "batched": {"sentences_per_s": count / seconds},
            "outputs": (batch1_out, batched_out)}


def plot(rows: List[Dict[str, Any]], path: str) -> None:
    """Left: each speculative system's histogram of tokens gained per step. Right: BLEU
    against speed ÷ greedy at batch 1 and batched, one point per system, so that relaxed
    acceptance settings draw their speed–quality curve."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speculative = [row for row in rows if "acceptance" in row]
    fig, (ax, curve) = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / max(len(speculative), 1)
    for i, row in enumerate(speculative):
        hist = row["acceptance"]["histogram"]
        total = max(sum(hist), 1)
        ax.bar([n + (i - len(speculative) / 2) * width for n in range(len(hist))],
               [c / total for c in hist], width, align="edge",
               label=f"{row['system']} (mean {row['acceptance']['mean_tokens_per_step']:.2f})")
    ax.set_xlabel("tokens gained per sentence and verification step")
    ax.set_ylabel("share of steps")
    ax.set_title("speculative decoding: accepted tokens per step")
    ax.legend(fontsize=7)
    greedy = rows[0]
    for mode, marker in (("batch1", "o"), ("batched", "s")):
        speed = [row[mode]["sentences_per_s"] / greedy[mode]["sentences_per_s"] for row in rows]
        curve.plot([row["bleu"] for row in rows], speed, marker=marker, linestyle="",
                   label="batch 1" if mode == "batch1" else "batched")
        for row, value in zip(rows, speed):
            curve.annotate(row["system"].replace("spec ", ""), (row["bleu"], value), fontsize=6)
    curve.axhline(1.0, color="grey", linewidth=0.5)
    curve.set_xlabel("BLEU")
    curve.set_ylabel("sentences/s ÷ greedy's")
    curve.set_title("speed against quality")
    curve.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="AR model folder (the verifier)")
    parser.add_argument("--drafter", required=True, help="NAT model folder, same tokenizer")
    parser.add_argument("--input", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--block-size", type=int, nargs="+", default=[0, 4],
                        help="draft tokens verified per step (0: the whole draft)")
    parser.add_argument("--relaxed", nargs="*", default=[], metavar="TOP:TOLERANCE",
                        help="also time relaxed acceptance (first block size)")
    parser.add_argument("--min-confidence", type=float, nargs="*", default=[], metavar="P",
                        help="also run the first --block-size re-drafting with blocks ending "
                             "at the first draft token the drafter gives a probability < P")
    parser.add_argument("--redraft-only", action="store_true",
                        help="leave out the systems that keep stale drafts")
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="also at most this many sentences per batch (e.g. 32)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="only the first N sentences")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="as env.precision: bf16 weights under autocast, for the AR model "
                             "and the drafter alike")
    parser.add_argument("--output", required=True, help="JSON to write; a PNG goes beside it")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines = read_lines(args.input)[:args.limit or None]
    references = read_lines(args.reference)[:len(lines)]
    search = greedy_search(args.model)
    task = load_trained_task(args.model, "infer",
                             [f"env.device={args.device}", f"env.precision={args.precision}"],
                             search=search, needs=Translator)
    drafter = load_trained_model(args.drafter, "drafter")
    systems = build_systems(task, drafter, search, args)
    split = task.encode(lines)
    batches = batches_of(task, split, args.max_tokens, args.batch_size)
    warm = {k: v[:16] for k, v in split.items()}
    for _, generator in systems:
        measure(task, generator, warm, batches_of(task, warm, args.max_tokens, args.batch_size),
                len(warm["src"]))
    timings: Dict[str, List[Dict[str, Any]]] = {name: [] for name, _ in systems}
    outputs: Dict[str, Tuple[List[List[int]], List[List[int]]]] = {}
    for round_index in range(args.rounds):
        for name, generator in systems:
            if isinstance(generator, SpeculativeGenerator):
                generator.reset_statistics()  # each round decodes the set twice: same counts
            result = measure(task, generator, split, batches, len(lines))
            outputs[name] = result.pop("outputs")
            timings[name].append(result)
            print(f"[round {round_index + 1}/{args.rounds}] {name:<28} batch 1 "
                  f"{result['batch1']['sentences_per_s']:7.1f} sent/s, batched "
                  f"{result['batched']['sentences_per_s']:7.1f} sent/s", flush=True)
    greedy_batch1, greedy_batched = outputs["greedy"]
    rows = []
    for name, generator in systems:
        batch1_out, batched_out = outputs[name]
        row = {"system": name,
               "batch1": {k: statistics.median(t["batch1"][k] for t in timings[name])
                          for k in timings[name][0]["batch1"]},
               "batched": {"sentences_per_s": statistics.median(
                   t["batched"]["sentences_per_s"] for t in timings[name])},
               "by_round": timings[name],
               "lines_differing_from_greedy": {
                   "batched": sum(a != b for a, b in zip(batched_out, greedy_batched)),
                   "batch1": sum(a != b for a, b in zip(batch1_out, greedy_batch1))},
               "bleu": BLEU().compute(task.decode(batched_out), references)[0]}
        if isinstance(generator, SpeculativeGenerator):
            # Counted over the last round's batch-1 and batched passes: each sentence twice.
            stats = generator.statistics()
            row["acceptance"] = {**stats, "steps_per_sentence":
                                 stats["sentence_steps"] / (2 * len(lines))}
        rows.append(row)
        print(f"{name:<28} batch 1 {row['batch1']['sentences_per_s']:7.1f} sent/s  batched "
              f"{row['batched']['sentences_per_s']:7.1f} sent/s  BLEU {row['bleu']:5.2f}  "
              f"differing lines {row['lines_differing_from_greedy']}"
              + (f"  tokens/step {row['acceptance']['mean_tokens_per_step']:.2f}"
                 if "acceptance" in row else ""))
    result = {"command": " ".join(["python", "benchmarks/speculative.py"] + argv),
              "model": args.model, "drafter": args.drafter, "drafter_class":
                  type(drafter).__name__, "input": args.input, "sentences": len(lines),
              "search": search, "max_tokens": args.max_tokens, "batch_size": args.batch_size,
              "rounds": args.rounds, "threads": args.threads,
              "precision": args.precision, "machine": describe_machine(args.device),
              "rows": rows}
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.output}")
    plot(rows, os.path.splitext(args.output)[0] + ".png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
