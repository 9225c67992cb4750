"""fairseq measured beside paragen, on the same machine, data and config.

A fairseq figure measured on another machine says little about a paragen figure measured on
this one (CPUs differ, e.g. with or without AVX-512/AMX). This script runs fairseq itself on
the same data (the same SentencePiece pieces), config and machine, and alternates it with
paragen:

    bash benchmarks/fairseq_install.sh /tmp/fsq    # fairseq 0.12.2 (the newest on PyPI), patched
    F=/tmp/fsq/venv/bin                            # for Python 3.11 and torch 2.13
    python benchmarks/fairseq_peer.py --fairseq-bin $F prepare
    python benchmarks/fairseq_peer.py --fairseq-bin $F throughput --updates 150 --rounds 3 \
        --output benchmarks/results/fairseq_peer_throughput.json
    python benchmarks/fairseq_peer.py --fairseq-bin $F train --minutes 40 \
        --output benchmarks/results/fairseq_peer_train.json
    python benchmarks/fairseq_peer.py --fairseq-bin $F decode --ours runs/multi30k-transformer \
        --rounds 3 --output benchmarks/results/fairseq_peer_decode.json

* `throughput`: both toolkits train multi30k-small from scratch for `--updates` updates, in
  turn, `--rounds` times; each round's figure is the median target tokens/s over the logged
  windows after the first (warm-up); the result is the median over rounds of the ratio.
* `train`: fairseq's own 40-minute run (validation loss every epoch, as fairseq does by
  default), then test2016 sacreBLEU with beam 4 and greedy (best and last checkpoints).
* `decode`: fairseq-generate and `paragen bench` in turn, 2 threads, each round timing
  greedy and beam 4 at batch 1 and batched (fairseq: 128 sentences; paragen: 4,096 padded
  tokens, its default). fairseq's figure is its own "sentences/s", which counts generation
  time only, as `paragen bench` does. Both use max length 1.2·src + 10 and lenpen 1.

Run it on an otherwise idle machine: two processes on two cores slow each other down.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

DATA = "data/multi30k"
WORK = "runs/fairseq-peer"
# multi30k-small in fairseq's flags: examples/multi30k/transformer.yaml, option for option.
ARCH = ["--arch", "transformer", "--share-all-embeddings",
        "--encoder-layers", "3", "--decoder-layers", "3",
        "--encoder-embed-dim", "256", "--decoder-embed-dim", "256",
        "--encoder-ffn-embed-dim", "1024", "--decoder-ffn-embed-dim", "1024",
        "--encoder-attention-heads", "4", "--decoder-attention-heads", "4", "--dropout", "0.1"]
TRAIN = ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
         "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--weight-decay", "0.0001",
         "--lr", "1e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "500",
         "--clip-norm", "1.0", "--max-tokens", "4096", "--seed", "1", "--num-workers", "0",
         "--cpu", "--log-format", "json"]
SEARCH = ["--max-len-a", "1.2", "--max-len-b", "10", "--lenpen", "1.0"]


THREADS = "2"  # intra-op threads for both toolkits (a 2-core machine)


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS)
    return subprocess.run(command, check=True, text=True, env=env, **kwargs)


def prepare(args) -> None:
    """paragen's SentencePiece pieces (spm8k) as text, binarized by fairseq-preprocess (joined dictionary)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=f"{DATA}/spm8k.model")
    os.makedirs(f"{WORK}/text", exist_ok=True)
    for split in ("train", "valid", "test2016"):
        for lang in ("de", "en"):
            with open(f"{DATA}/{split}.{lang}", encoding="utf-8") as f:
                lines = [" ".join(sp.encode(line.rstrip("\n"), out_type=str)) for line in f]
            with open(f"{WORK}/text/{split}.{lang}", "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            if split == "test2016":  # fairseq's `test1` subset: the first --head sentences
                with open(f"{WORK}/text/head.{lang}", "w", encoding="utf-8") as f:
                    f.write("\n".join(lines[:args.head]) + "\n")
    shutil.rmtree(f"{WORK}/bin", ignore_errors=True)
    run([f"{args.fairseq_bin}/fairseq-preprocess", "--source-lang", "de", "--target-lang", "en",
         "--trainpref", f"{WORK}/text/train", "--validpref", f"{WORK}/text/valid",
         "--testpref", f"{WORK}/text/test2016,{WORK}/text/head", "--destdir", f"{WORK}/bin",
         "--joined-dictionary", "--workers", "2"], stdout=subprocess.DEVNULL)


def fairseq_windows(log: str) -> list:
    """Target tokens/s of each logged training window (fairseq's `wps`)."""
    rows = [json.loads(line[line.index("{"):]) for line in log.splitlines()
            if "| train_inner |" in line]
    return [float(r["wps"]) for r in rows]


def fairseq_train(args, save_dir: str, extra: list) -> str:
    result = run([f"{args.fairseq_bin}/fairseq-train", f"{WORK}/bin", *ARCH, *TRAIN,
                  "--save-dir", save_dir, *extra], stdout=subprocess.PIPE,
                 stderr=subprocess.STDOUT)
    return result.stdout


def paragen_windows(save_dir: str) -> list:
    records = [json.loads(line) for line in open(f"{save_dir}/metrics.jsonl")]
    return [r["tokens_per_s"] for r in records if "tokens_per_s" in r]


def training_speed(args, system: str, precision: str) -> float:
    """Median target tokens/s of one from-scratch run of `--updates` updates, first window
    (warm-up) left out."""
    shutil.rmtree("/tmp/paragen-peer", ignore_errors=True)
    if system == "fairseq":
        log = fairseq_train(args, "/tmp/paragen-peer/fairseq",
                            ["--max-update", str(args.updates), "--log-interval", "25",
                             "--no-save", "--disable-validation",
                             *(["--bf16"] if precision == "bf16" else [])])
        return statistics.median(fairseq_windows(log)[1:])
    run([sys.executable, "-m", "paragen.cli", "train", "--config",
         "examples/multi30k/transformer.yaml", f"task.trainer.max_steps={args.updates}",
         "task.trainer.validate_interval=0", "task.trainer.log_interval=25",
         "task.trainer.save_dir=/tmp/paragen-peer/paragen", f"env.precision={precision}",
         "env.no_progress_bar=true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return statistics.median(paragen_windows("/tmp/paragen-peer/paragen")[1:])


def throughput(args) -> None:
    """Each round trains every system in turn; ratios are to fairseq fp32 in the same round."""
    rounds = []
    for _ in range(args.rounds):
        record = {system: round(training_speed(args, *system.split()))
                  for system in args.systems}
        for system in args.systems[1:]:
            record[f"{system} / {args.systems[0]}"] = round(record[system] / record[args.systems[0]], 3)
        rounds.append(record)
        print(json.dumps(record), flush=True)
        write(args, {"updates_per_round": args.updates, "rounds": rounds,
                     "medians": medians(rounds)})


def score(hypotheses: list) -> dict:
    from sacrebleu.metrics import BLEU

    with open(f"{DATA}/test2016.en", encoding="utf-8") as f:
        references = [line.rstrip("\n") for line in f]
    bleu = BLEU()
    return {"bleu": round(bleu.corpus_score(hypotheses, [references]).score, 2),
            "signature": str(bleu.get_signature())}


def generate(args, checkpoint: str, beam: int, batch_size: int, quiet: bool,
             subset: str = "test") -> str:
    result = run([f"{args.fairseq_bin}/fairseq-generate", f"{WORK}/bin", "--path", checkpoint,
                  "--gen-subset", subset, "--beam", str(beam), "--batch-size", str(batch_size),
                  "--remove-bpe", "sentencepiece", "--cpu", *SEARCH,
                  *(["--quiet"] if quiet else [])],
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return result.stdout


def hypotheses(output: str) -> list:
    """Detokenized hypotheses in input order, from fairseq-generate's `D-<id>` lines."""
    found = {}
    for line in output.splitlines():
        if line.startswith("D-"):
            index, _, text = line[2:].split("\t", 2)
            found[int(index)] = text
    return [found[i] for i in range(len(found))]


def sentences_per_s(output: str) -> float:
    return float(re.search(r"Translated .* \(([\d.]+) sentences/s", output).group(1))


def train(args) -> None:
    save_dir = f"{WORK}/checkpoints"
    if not args.evaluate_only:
        shutil.rmtree(save_dir, ignore_errors=True)
        log = fairseq_train(args, save_dir, ["--stop-time-hours", str(args.minutes / 60),
                                             "--log-interval", "50", "--keep-last-epochs", "3"])
        with open(f"{WORK}/train.log", "w") as f:
            f.write(log)
    with open(f"{WORK}/train.log") as f:
        log = f.read()
    wall = float(re.search(r"done training in ([\d.]+) seconds", log).group(1))
    updates = max(json.loads(line[line.index("{"):]).get("num_updates", 0)
                  for line in log.splitlines() if "| train_inner |" in line)
    test = {f"{name}_{setting}": score(hypotheses(generate(args, f"{save_dir}/{name}.pt",
                                                           beam, 128, quiet=False)))
            for name in ("checkpoint_best", "checkpoint_last")
            for setting, beam in (("beam4", 4), ("greedy", 1))}
    write(args, {"train_wall_seconds": round(wall, 1), "updates_at_least": int(updates),
                 "tokens_per_s_median": round(statistics.median(fairseq_windows(log))),
                 "test2016": test})


def decode(args) -> None:
    checkpoint = f"{WORK}/checkpoints/checkpoint_best.pt"
    settings = [("greedy", 1), ("beam4", 4)]
    rounds = []
    for _ in range(args.rounds):
        record = {}
        for name, beam in settings:
            for label, batch_size in (("batch1", 1), ("batched", 128)):
                output = generate(args, checkpoint, beam, batch_size, quiet=True,
                                  subset="test1" if args.head else "test")
                record[f"fairseq {name} {label}"] = sentences_per_s(output)
        run([sys.executable, "-m", "paragen.cli", "bench", "--model", args.ours,
             "--only", "greedy", "beam4", "--threads", THREADS, "--limit", str(args.head),
             *args.bench_options,
             "--output", "/tmp/paragen-peer-bench.json"], stdout=subprocess.DEVNULL)
        with open("/tmp/paragen-peer-bench.json") as f:
            for row in json.load(f)["rows"]:
                label = row["system"].split(" ", 1)[1] if " " in row["system"] else row["system"]
                record[f"paragen {label} batch1"] = row["batch1"]["sentences_per_s"]
                record[f"paragen {label} batched"] = row["batched"]["sentences_per_s"]
        rounds.append({key: round(value, 1) for key, value in record.items()})
        print(json.dumps(rounds[-1]), flush=True)
        middle = medians(rounds)
        # each paragen row over fairseq's same setting, e.g. "paragen beam4 int8 batched"
        # over "fairseq beam4 batched"
        ratios = {key: round(value / middle[f"fairseq {key.split()[1]} {key.split()[-1]}"], 2)
                  for key, value in middle.items() if key.startswith("paragen")}
        write(args, {"rounds": rounds, "medians": middle, "ratios_to_fairseq": ratios})


def medians(rounds: list) -> dict:
    return {key: round(statistics.median(r[key] for r in rounds), 1) for key in rounds[0]}


def write(args, result: dict) -> None:
    result = {"command": " ".join(["python"] + sys.argv), **result}
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fairseq-bin", required=True,
                        help="bin folder of a Python environment with fairseq (fairseq_install.sh)")
    verbs = parser.add_subparsers(dest="verb", required=True)
    sub = verbs.add_parser("prepare")
    sub.add_argument("--head", type=int, default=500,
                     help="also binarize the first N test sentences (subset test1)")
    sub = verbs.add_parser("throughput")
    sub.add_argument("--updates", type=int, default=150)
    sub.add_argument("--rounds", type=int, default=3)
    sub.add_argument("--systems", nargs="+", default=["fairseq fp32", "paragen fp32"],
                     help="'TOOLKIT PRECISION' each; ratios are to the first")
    sub.add_argument("--output", default="benchmarks/results/fairseq_peer_throughput.json")
    sub = verbs.add_parser("train")
    sub.add_argument("--minutes", type=float, default=40)
    sub.add_argument("--output", default="benchmarks/results/fairseq_peer_train.json")
    sub.add_argument("--evaluate-only", action="store_true",
                     help="score the checkpoints of a finished run (its train.log is kept)")
    sub = verbs.add_parser("decode")
    sub.add_argument("--ours", required=True, help="paragen AR model folder")
    sub.add_argument("--rounds", type=int, default=3)
    sub.add_argument("--head", type=int, default=0,
                     help="decode only the first N test sentences (N as given to prepare)")
    sub.add_argument("--bench-options", nargs=argparse.REMAINDER, default=[],
                     help="passed on to `paragen bench` (e.g. --quantize --precision fp32 bf16)")
    sub.add_argument("--output", default="benchmarks/results/fairseq_peer_decode.json")
    args = parser.parse_args()
    {"prepare": prepare, "throughput": throughput, "train": train, "decode": decode}[args.verb](args)


if __name__ == "__main__":
    main()
