"""How well does `paragen clean` find real noise, and how fast is it?

    python benchmarks/clean_noise.py [--data ../shared/data/multi30k] [--per-type 1000] \
        [--throughput-pairs 1000000] [--workers 2] [--output benchmarks/results/clean_noise.json]

1. Builds a noisy De→En corpus, seeded (--seed 1), in data/cleaning/: Multi30k train plus
   --per-type pairs of each noise type, made from other training pairs:
     misaligned      a German sentence with the English of another, random line;
     wrong_language  the English side replaced by the same line's French or Czech (half each);
     html_url        an HTML tag pair, an entity or a URL inserted into one side;
     repeated        one word of one side repeated 6-10 times in a row;
     truncated       the English side cut to its first 30-55% of words (at least two kept).
   Then shuffled; `noisy.labels` gives each line's type (`clean` for Multi30k's own pairs).
2. Cleans it with `paragen clean` (every rule, default thresholds) and reports, for each noise
   type, its recall (share of injected pairs removed) and, for each rule, its precision (share
   of the pairs it removed that were injected noise), plus the Multi30k pairs each rule removed.
3. Times the whole command on --throughput-pairs distinct pairs (two random lines of the noisy
   corpus joined per line): pairs per second of wall time, and per CPU second of the command
   and its workers, which stays fair when other jobs share the machine.
Writes the JSON result (with the command and the machine) to --output.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from collections import Counter, defaultdict
from typing import Dict, List, Tuple

from paragen.datasets import read_lines

NOISE_TYPES = ("misaligned", "wrong_language", "html_url", "repeated", "truncated")
TAGS = (("<b>", "</b>"), ("<i>", "</i>"), ('<a href="#">', "</a>"), ("<p>", "</p>"))
POLLUTION = ("&nbsp;", "&amp;", "http://www.example.com/page", "https://bit.ly/3xYz",
             "www.flickr.com/photos", "<br/>")


def pollute(text: str, rng: random.Random) -> str:
    words = text.split()
    if rng.random() < 0.5:
        start, end = rng.choice(TAGS)
        i = rng.randrange(len(words))
        j = rng.randrange(i, len(words))
        words[i], words[j] = start + words[i], words[j] + end
    else:
        words.insert(rng.randrange(len(words) + 1), rng.choice(POLLUTION))
    return " ".join(words)


def repeat_word(text: str, rng: random.Random) -> str:
    words = text.split()
    i = rng.randrange(len(words))
    return " ".join(words[:i] + [words[i]] * rng.randint(6, 10) + words[i + 1:])


def truncate(text: str, rng: random.Random) -> str:
    words = text.split()
    keep = max(2, int(len(words) * rng.uniform(0.30, 0.55)))
    return " ".join(words[:keep])


def noisy_corpus(data: str, per_type: int, seed: int) -> List[Tuple[str, str, str]]:
    """(German, English, label) lines: Multi30k train and the injected noise, shuffled."""
    rng = random.Random(seed)
    de, en, fr, cs = (read_lines(os.path.join(data, f"train.{lang}"))
                      for lang in ("de", "en", "fr", "cs"))
    lines = [(s, t, "clean") for s, t in zip(de, en)]
    long_enough = [i for i, t in enumerate(en) if len(t.split()) >= 6]
    for kind in NOISE_TYPES:
        for _ in range(per_type):
            i = rng.choice(long_enough)
            s, t = de[i], en[i]
            if kind == "misaligned":
                t = en[rng.choice([j for j in rng.sample(long_enough, 2) if j != i])]
            elif kind == "wrong_language":
                t = (fr if rng.random() < 0.5 else cs)[i]
            elif kind == "html_url":
                s, t = (pollute(s, rng), t) if rng.random() < 0.5 else (s, pollute(t, rng))
            elif kind == "repeated":
                s, t = (repeat_word(s, rng), t) if rng.random() < 0.5 else (s, repeat_word(t, rng))
            else:
                t = truncate(t, rng)
            lines.append((s, t, kind))
    rng.shuffle(lines)
    return lines


def write(prefix: str, lines: List[Tuple[str, ...]], names: Tuple[str, ...]) -> None:
    for column, name in enumerate(names):
        with open(f"{prefix}.{name}", "w", encoding="utf-8") as f:
            f.writelines(line[column] + "\n" for line in lines)


def clean(prefix: str, output: str, workers: int) -> Tuple[float, float]:
    """Runs `paragen clean` in a child process; returns its wall seconds and the CPU seconds
    of it and its workers (the fair measure on a machine other jobs share)."""
    command = [sys.executable, "-m", "paragen.cli", "clean", "--src", prefix + ".de",
               "--tgt", prefix + ".en", "--output-prefix", output, "--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def score(labels: List[str], removed_path: str) -> Dict[str, object]:
    """Recall per noise type, precision per rule, Multi30k pairs removed per rule."""
    rule_of: Dict[int, str] = {}
    with open(removed_path, encoding="utf-8") as f:
        for line in f:
            rule, number = line.split("\t", 2)[:2]
            rule_of[int(number)] = rule
    injected = Counter(labels)
    caught: Counter = Counter()
    by_rule: Dict[str, Counter] = defaultdict(Counter)
    for number, rule in rule_of.items():
        label = labels[number - 1]
        by_rule[rule][label] += 1
        caught[label] += 1
    return {
        "recall": {kind: round(caught[kind] / injected[kind], 4) for kind in NOISE_TYPES},
        "precision": {rule: round(1 - c["clean"] / sum(c.values()), 4)
                      for rule, c in sorted(by_rule.items())},
        "removed_by_rule": {rule: dict(c) for rule, c in sorted(by_rule.items())},
        "clean_pairs": injected["clean"], "clean_pairs_removed": caught["clean"],
        "noise_removed": sum(caught[k] for k in NOISE_TYPES),
        "noise_injected": sum(injected[k] for k in NOISE_TYPES),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(
        os.environ.get("PARAGEN_DATA", "../shared/data"), "multi30k"))
    parser.add_argument("--folder", default="data/cleaning")
    parser.add_argument("--per-type", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--throughput-pairs", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", default="benchmarks/results/clean_noise.json")
    args = parser.parse_args()
    os.makedirs(args.folder, exist_ok=True)
    noisy = os.path.join(args.folder, "noisy")
    lines = noisy_corpus(args.data, args.per_type, args.seed)
    write(noisy, lines, ("de", "en", "labels"))
    seconds, _ = clean(noisy, os.path.join(args.folder, "cleaned"), args.workers)
    result = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "noisy_pairs": len(lines), "clean_seconds": round(seconds, 1),
              **score([line[2] for line in lines], os.path.join(args.folder,
                                                               "cleaned.removed.tsv"))}
    if args.throughput_pairs:
        rng = random.Random(args.seed)
        big = os.path.join(args.folder, "throughput")
        with open(big + ".de", "w", encoding="utf-8") as fs, \
                open(big + ".en", "w", encoding="utf-8") as ft:
            for _ in range(args.throughput_pairs):
                a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
                fs.write(f"{lines[a][0]} {lines[b][0]}\n")
                ft.write(f"{lines[a][1]} {lines[b][1]}\n")
        wall, cpu = clean(big, os.path.join(args.folder, "throughput-cleaned"), args.workers)
        result["throughput"] = {"pairs": args.throughput_pairs, "workers": args.workers,
                                "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
                                "pairs_per_second": round(args.throughput_pairs / wall),
                                "pairs_per_cpu_second": round(args.throughput_pairs / cpu),
                                # the largest resident set of any child (the command, a worker)
                                "peak_rss_mb": round(resource.getrusage(
                                    resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
