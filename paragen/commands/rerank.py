"""`paragen rerank`: choose each sentence's translation among candidates by a weighted sum of
features, the weights tuned on a dev set for corpus BLEU, as WMT systems rerank n-best lists.

    # tune on valid, save the weights
    paragen rerank --source valid.de --candidates valid.beam4.en valid.npd.en \
        --model ar=runs/t/average.pt --reference valid.en --save-weights runs/rerank.json
    # apply them to test (the same candidate sources, models and --nbest files)
    paragen rerank --source test.de --candidates test.beam4.en test.npd.en \
        --model ar=runs/t/average.pt --weights runs/rerank.json > test.rerank.en

Candidates: `--candidates FILE ...` (one system each: line i translates source line i) and
`--nbest FILE` (Moses format, `i ||| hypothesis ||| name= v ... ||| score`, its features
kept). Identical hypotheses of a sentence merge and remember which systems proposed them.

Features of a candidate:
  model:NAME    mean log-probability per target token (eos included) under an AR model,
                teacher-forced, one per `--model NAME=PATH`; a right-to-left model (trained
                with `task.reverse_target: true`) reads each candidate reversed; a CTC
                model (`CTCNAT`) gives its CTC log-likelihood, summed over alignments;
  votes         the share of `--candidates` systems that proposed it (consensus);
  system:K      1 if the K-th `--candidates` file proposed it (lets tuning trust a system);
  length_ratio  candidate words / source words;
  nbest:NAME    the n-best file's own features.
Tuning is MERT-style coordinate ascent: each feature's weight in turn is set to the value on
a grid that maximises corpus BLEU (sacrebleu, from per-candidate n-gram statistics, so a trial
costs one vectorised sum), rounds until no weight moves, from several seeded starts.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Dict, List, Tuple

import numpy as np

from paragen.datasets import read_lines, read_text
from paragen.errors import ConfigError, DataError

GRID = np.round(np.arange(-3.0, 3.01, 0.1), 2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="source sentences, one per line")
    parser.add_argument("--candidates", nargs="*", default=[],
                        help="one file per system, line-aligned with --source")
    parser.add_argument("--nbest", nargs="*", default=[], help="Moses-format n-best files")
    parser.add_argument("--model", nargs="*", default=[], metavar="NAME=PATH",
                        help="AR or CTC models whose scores are features")
    parser.add_argument("--features", nargs="*", default=[], metavar="PREFIX",
                        help="use only the features whose names start with one of these, "
                             "e.g. model: length_ratio (fewer weights fit the dev set's noise "
                             "less); default: all")
    parser.add_argument("--reference", help="tune on these references (the dev set)")
    parser.add_argument("--save-weights", help="where tuning writes the weights (JSON)")
    parser.add_argument("--weights", help="weights to apply (JSON from --save-weights)")
    parser.add_argument("--restarts", type=int, default=5, help="tuning starts (the first: "
                                                                "model scores 1, the rest 0)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the tuning restarts")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per scoring pass")


class Candidates:
    """Each sentence's distinct hypotheses and their features, as a sparse (sentence, k) list."""

    def __init__(self, sources: List[str]):
        self.sources = sources
        self.hypotheses: List[List[str]] = [[] for _ in sources]
        self.features: List[List[Dict[str, float]]] = [[] for _ in sources]

    def add(self, sentence: int, hypothesis: str, features: Dict[str, float]) -> None:
        if not 0 <= sentence < len(self.sources):
            raise DataError(f"sentence index {sentence} outside the {len(self.sources)} sources")
        hypothesis = " ".join(hypothesis.split())
        known = self.hypotheses[sentence]
        if hypothesis in known:
            self.features[sentence][known.index(hypothesis)].update(features)
        else:
            known.append(hypothesis)
            self.features[sentence].append(dict(features))

    def flat(self) -> List[Tuple[int, int, str]]:
        return [(i, k, h) for i, hyps in enumerate(self.hypotheses) for k, h in enumerate(hyps)]


_NBEST_FEATURE = re.compile(r"(\S+)=\s+((?:[-+\d.eE]+\s*)+)")


def read_candidates(args: argparse.Namespace) -> Candidates:
    sources = read_lines(args.source)
    found = Candidates(sources)
    for k, path in enumerate(args.candidates):
        hyps = read_lines(path)
        if len(hyps) != len(sources):
            raise DataError(f"{path}: {len(hyps)} lines, but --source has {len(sources)}")
        for i, hyp in enumerate(hyps):
            found.add(i, hyp, {f"system:{k}": 1.0})
    for path in args.nbest:
        for number, line in enumerate(read_lines(path), start=1):
            fields = [f.strip() for f in line.split("|||")]
            if len(fields) < 2 or not fields[0].isdigit():
                raise DataError(f"{path}:{number}: expected 'i ||| hypothesis ||| features', "
                                f"got {line[:60]!r}")
            features = {}
            for name, values in _NBEST_FEATURE.findall(fields[2] if len(fields) > 2 else ""):
                for j, value in enumerate(values.split()):
                    features[f"nbest:{name.rstrip('=')}{'' if j == 0 else j}"] = float(value)
            found.add(int(fields[0]), fields[1], features)
    empty = [i + 1 for i, hyps in enumerate(found.hypotheses) if not hyps]
    if empty:
        raise DataError(f"no candidate for source line(s) {empty[:5]}: give --candidates "
                        f"or --nbest covering every line")
    systems = len(args.candidates)
    for i, hyps in enumerate(found.hypotheses):
        for feats, hyp in zip(found.features[i], hyps):
            if systems:
                feats["votes"] = sum(feats.get(f"system:{k}", 0.0) for k in range(systems)) \
                    / systems
            feats["length_ratio"] = len(hyp.split()) / max(1, len(found.sources[i].split()))
    return found


def add_model_scores(found: Candidates, name: str, path: str, batch_size: int) -> None:
    """`model:NAME` for every candidate: one encoder pass per source, all its candidates
    scored in one teacher-forced decoder pass (the NAT reranker's scorer)."""
    import torch

    from paragen.generators.nat import load_reranker
    from paragen.model_folder import open_model_folder
    from paragen.tokenizers import build_tokenizers

    folder = open_model_folder(path)
    task = folder.config["task"]
    src_tok, tgt_tok = build_tokenizers(task["tokenizer"], task["src"], task["tgt"],
                                        folder.folder, f"--model {name}")
    score = load_reranker(path, tgt_tok.pad_id, f"--model {name}")
    pad = tgt_tok.pad_id
    for start in range(0, len(found.sources), batch_size):
        rows = range(start, min(start + batch_size, len(found.sources)))
        width = max(len(found.hypotheses[i]) for i in rows)
        src = [src_tok.encode(found.sources[i]) + [src_tok.eos_id] for i in rows]
        hyps = [tgt_tok.encode(h) for i in rows
                for h in found.hypotheses[i] + found.hypotheses[i][:1] * (width - len(
                    found.hypotheses[i]))]  # every source gets `width` rows; extras ignored
        src_t = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in src], True, pad)
        hyp_t = torch.nn.utils.rnn.pad_sequence([torch.tensor(h or [pad]) for h in hyps],
                                                True, pad)
        scores = score(src_t, hyp_t, tgt_tok.bos_id, tgt_tok.eos_id).view(len(rows), width)
        for row, i in enumerate(rows):
            for k, feats in enumerate(found.features[i]):
                feats[f"model:{name}"] = float(scores[row, k])


def feature_matrix(found: Candidates, names: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Features (S, K, F) of every sentence's candidates and which of the K slots exist."""
    width = max(len(h) for h in found.hypotheses)
    features = np.zeros((len(found.sources), width, len(names)))
    present = np.zeros((len(found.sources), width), dtype=bool)
    for i, k, _ in found.flat():
        present[i, k] = True
        features[i, k] = [found.features[i][k].get(n, 0.0) for n in names]
    return features, present


def choose(features: np.ndarray, present: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each sentence's best candidate under `weights` (the first one on a tie)."""
    return np.where(present, features @ weights, -np.inf).argmax(1)


class Tuner:
    """Corpus BLEU of any weight vector in one vectorised pass, from each candidate's BLEU
    statistics (S, K, 10)."""

    def __init__(self, found: Candidates, names: List[str], references: List[str]):
        from sacrebleu.metrics import BLEU

        self.bleu = BLEU()
        self.features, self.present = feature_matrix(found, names)
        self.stats = np.zeros(self.present.shape + (10,))
        for i, k, hyp in found.flat():
            self.stats[i, k] = self.bleu._extract_corpus_statistics([hyp], [[references[i]]])[0]

    def choose(self, weights: np.ndarray) -> np.ndarray:
        return choose(self.features, self.present, weights)

    def score(self, weights: np.ndarray) -> float:
        chosen = self.choose(weights)
        total = self.stats[np.arange(len(chosen)), chosen].sum(0)
        return self.bleu._compute_score_from_stats(list(total)).score

    def tune(self, start: np.ndarray, restarts: int, seed: int) -> Tuple[np.ndarray, float]:
        rng = np.random.default_rng(seed)
        best_w, best = start, self.score(start)
        for attempt in range(restarts):
            w = start.copy() if attempt == 0 else rng.choice(GRID, size=len(start))
            current = self.score(w)
            moved = True
            while moved:
                moved = False
                for f in range(len(w)):
                    trials = np.repeat(w[None], len(GRID), 0)
                    trials[:, f] = GRID
                    values = [self.score(t) for t in trials]
                    top = int(np.argmax(values))
                    if values[top] > current + 1e-9:
                        w, current, moved = trials[top], values[top], True
            if current > best:
                best_w, best = w, current
        return best_w, best


def run(args: argparse.Namespace) -> int:
    if bool(args.reference) == bool(args.weights):
        raise ConfigError("paragen rerank: give --reference (tune) or --weights (apply)")
    found = read_candidates(args)
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--model {spec!r}: expected NAME=PATH")
        add_model_scores(found, name, path, args.batch_size)
    available = sorted({n for feats in found.features for f in feats for n in f})
    names = [n for n in available if n.startswith(tuple(args.features or [""]))]
    if not names:
        raise ConfigError(f"--features {' '.join(args.features)}: no feature starts with "
                          f"these; the candidates have {available}")
    if args.weights:
        saved = json.loads(read_text(args.weights))["weights"]
        missing = sorted(set(saved) - set(names))
        if missing:
            raise ConfigError(f"{args.weights}: features {missing} were tuned but are not "
                              f"given now (same --candidates, --nbest, --model and --features "
                              f"as tuning)")
        weights = np.array([saved.get(n, 0.0) for n in names])
        chosen = choose(*feature_matrix(found, names), weights)
    else:
        references = read_lines(args.reference)
        if len(references) != len(found.sources):
            raise DataError(f"{args.reference}: {len(references)} lines, but --source has "
                            f"{len(found.sources)}")
        tuner = Tuner(found, names, references)
        start = np.array([1.0 if n.startswith("model:") else 0.0 for n in names])
        weights, tuned = tuner.tune(start, args.restarts, args.seed)
        chosen = tuner.choose(weights)
        baseline = {n: round(tuner.score(np.array([float(m == n) for m in names])), 2)
                    for n in names if n.startswith(("system:", "model:"))}
        report = {"weights": dict(zip(names, map(float, weights))), "dev_bleu": round(tuned, 2),
                  "dev_bleu_by_single_feature": baseline}
        if args.save_weights:
            from paragen.files import atomic_text_output

            with atomic_text_output(args.save_weights, flag="--save-weights") as f:
                json.dump(report, f, indent=1)
        print(json.dumps(report), file=sys.stderr)
    for i, k in enumerate(chosen):
        print(found.hypotheses[i][k])
    return 0
