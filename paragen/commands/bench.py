"""`paragen bench --model AR_DIR --model NAT_DIR [--input test.de] [--threads 1 2]`.

Decoding speed of several trained models on one test set, in one run, on one machine
(CPU by default; `--device cuda --precision fp32 bf16` for a GPU).
Protocol (after Helcl et al. 2022): tokenization excluded; every setting warmed up first;
batch 1 feeds the sentences one at a time in input order (median latency, and sentences/s
over the whole set); batched sorts by length into batches of at most `--max-tokens`
padded source tokens (each budget given is timed) and takes the median of `--repeats` passes.
With `--rounds N` every system is timed N times in turn and each number is the median over
rounds, so that a slow minute on a shared machine does not land on one system alone.
Each timed call includes moving the source to the device and the output back to the host,
so GPU timings need no extra synchronization and count what a real `generate` pays.
AR models run greedy and beam 4 (a CTranslate2 export too: in float32 and, with --quantize
or from an int8 export, in int8, as rows "CTranslate2 float32 greedy" ...); NAT models a
single pass and NPD over 5 lengths (with `--reranker AR`, also ranked by that AR model),
plus, for length-predicting models (PyTorch only), one refinement pass; CMLM a single
pass and (PyTorch only) mask-predict with 4 and 10 iterations; DA-Transformer its three
path searches; an AR model stored with SpeculativeGenerator its stored drafter, verifying the
whole draft or 4 tokens per step, as every AR model with `--drafter NAT`
(`benchmarks/speculative.py` adds acceptance counts and relaxed acceptance).
With `--reference`, every system's output on the whole --input (its `translate`, untimed,
whatever --limit times) is also scored with sacreBLEU: one run gives the speed and the
quality of every setting.
Prints a table and writes JSON, plus a PNG when matplotlib is installed: with --reference,
BLEU against sentences/s (batch 1 and batched) with the Pareto front marked (`paragen plot`
redraws it from the JSON); without, a bar chart of speed.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Dict, List, Tuple

import torch

from paragen.datasets import read_lines
from paragen.errors import ConfigError, DataError
from paragen.interfaces import Translator
from paragen.models.exported import releasing_memory
from paragen.commands.plot import model_label, plot_bench as plot
from paragen.model_folder import is_exported, read_manifest, stored_config
from paragen.samplers import BucketSampler
from paragen.tasks.build import load_trained_task

AR_SETTINGS = [("greedy", {"search": {"class": "GreedySearch"}}),
               ("beam4", {"search": {"class": "BeamSearch", "beam_size": 4}})]
NAT_SINGLE, NAT_NPD = ("single", {"length_beam": 1}), ("NPD-5", {"length_beam": 5})
NAT_REFINE = ("refine-1", {"refine_steps": 1})
MASK_PREDICT = [("single", {"iterations": 1, "length_beam": 1}),
                ("mask-predict-4", {"iterations": 4, "length_beam": 3}),
                ("mask-predict-10", {"iterations": 10, "length_beam": 3})]
DAG_SETTINGS = [(name, {"strategy": name}) for name in ("greedy", "lookahead", "viterbi")]
CT2 = "CTranslate2"  # the system name of a CTranslate2 export (`CTranslate2Generator` settings)
CT2_SETTINGS = [("greedy", {"beam_size": 1}), ("beam4", {"beam_size": 4})]
# An AR model with a NAT drafter: the whole draft, 4 tokens per step, or the whole draft up to
# the first token the drafter gives less than 0.9
SPECULATIVE = [("speculative", {"block_size": 0}), ("speculative-4", {"block_size": 4}),
               ("speculative-trimmed", {"block_size": 0, "min_confidence": 0.9})]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True,
                        help="model folder or checkpoint (repeat for several)")
    parser.add_argument("--input", required=True, help="source sentences, one per line")
    parser.add_argument("--reference", help="reference translations, line-aligned with --input: "
                                            "each system's output on all of --input is "
                                            "scored with sacreBLEU")
    parser.add_argument("--reranker", help="AR model (folder or .pt): NAT models with "
                                           "NATGenerator also run NPD-5 ranked by it "
                                           "(the 'NPD-5 reranked' setting)")
    parser.add_argument("--drafter", help="NAT model (folder or .pt) with the AR models' "
                                          "tokenizer: AR models also run speculative decoding "
                                          "drafted by it (settings speculative, speculative-4, "
                                          "speculative-trimmed)")
    parser.add_argument("--npd-threshold", type=float,
                        help="NAT models with NATGenerator also run NPD-5 only for sentences "
                             "whose single pass has a mean token log-probability below this "
                             "(settings 'NPD-5 adaptive' and, with --reranker, 'NPD-5 "
                             "reranked adaptive')")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to time each system at")
    parser.add_argument("--max-tokens", type=int, nargs="+", default=[4096],
                        help="padded source tokens per batch; the first is the headline")
    parser.add_argument("--batch-tokens", type=int, nargs="+", dest="max_tokens",
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # former name
    parser.add_argument("--repeats", type=int, default=3,
                        help="batched passes per round (their median is the round's number)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="visit every system this many times in turn; rows give medians")
    parser.add_argument("--limit", type=int, default=0, help="only the first N sentences")
    parser.add_argument("--only", nargs="+", metavar="SETTING",
                        help="time only these settings (greedy, beam4, single, NPD-5, refine-1, "
                             "'NPD-5 reranked', 'NPD-5 [reranked] adaptive', mask-predict-4, "
                             "mask-predict-10, lookahead, viterbi, speculative, speculative-4, "
                             "speculative-trimmed)")
    parser.add_argument("--quantize", action="store_true",
                        help="also time int8 dynamic quantization of Linear layers (a float32 "
                             "CTranslate2 export: CTranslate2's int8 compute type)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                        help="as env.precision when decoding: bf16 weights, under autocast")
    parser.add_argument("--output", help="JSON file to write (default: decode_speed.json in "
                                             "the first model's folder); a PNG goes beside it")
    parser.add_argument("--lib", action="append", default=[],
                        help="plug-in module or folder that registers the models' classes")


def decode(task, src: torch.Tensor) -> torch.Tensor:
    """One generator call as `generate` makes it: source to the device, output back to the
    host (which waits for the device to finish)."""
    with task.env.autocast():
        tokens, _ = task.generator(src.to(task.env.device))
    return tokens.cpu()


def time_batch1(task, split: Dict[str, Any]) -> Dict[str, float]:
    latencies = []
    for i in range(len(split["src"])):
        src = task.collate([i], split)["src"]
        started = time.perf_counter()
        decode(task, src)
        latencies.append(time.perf_counter() - started)
    return {"ms_per_sentence_median": 1e3 * statistics.median(latencies),
            "sentences_per_s": len(latencies) / sum(latencies)}


def time_batched(task, split: Dict[str, Any], batch_tokens: int, repeats: int) -> Dict[str, float]:
    sampler = BucketSampler(max_tokens=batch_tokens, shuffle=False)
    batches = [task.collate(b, split)["src"] for b in sampler.batches(split["lengths"])]
    passes = []
    for _ in range(repeats):
        started = time.perf_counter()
        for src in batches:
            decode(task, src)
        passes.append(time.perf_counter() - started)
    seconds = statistics.median(passes)
    return {"sentences_per_s": len(split["src"]) / seconds,
            "ms_per_sentence": 1e3 * seconds / len(split["src"]), "batch_tokens": batch_tokens}


def settings_for(model: str, reranker: str | None = None, drafter: str | None = None,
                 npd_threshold: float | None = None
                 ) -> Tuple[str, List[Tuple[str, Dict[str, Any]]]]:
    """The system's name in the table (model class + engine) and the settings timed for it
    (`reranker`: an AR model that ranks NPD candidates, for NATGenerator models; `drafter`:
    a NAT model that drafts for AR models; `npd_threshold`: NPD for the sentences whose
    single pass is less confident, for NATGenerator models)."""
    task_config = stored_config(model)["task"]
    generator = str((task_config.get("generator") or {}).get("class", "SequenceGenerator"))
    model_class, engine, exported = str(task_config["model"]["class"]), "", is_exported(model)
    if exported:
        manifest = read_manifest(model)
        if manifest["format"] == "ctranslate2":
            return CT2, CT2_SETTINGS
        engine = f" {manifest['format']}" + (f" {manifest['quantized']}"
                                             if manifest.get("quantized") else "")
        length = manifest.get("length", {})  # exports before `model_class` was recorded
        upsample = length.get("upsample") or length.get("ctc_upsample")
        model_class = manifest.get("model_class", "CTCNAT" if upsample else "GLAT")
    generator = generator.lower()
    if generator == "natgenerator":
        # Refinement feeds back tokens of fixed slots, which only a length-predicting model has
        # (a CTC output is collapsed afterwards), and it needs the PyTorch model.
        length_model = model_class.lower() != "ctcnat"
        reranked = [("NPD-5 reranked", {"length_beam": 5, "reranker": reranker})] if reranker \
            else []
        adaptive = [(f"{name} adaptive", {**setting, "npd_threshold": npd_threshold})
                    for name, setting in [NAT_NPD] + reranked] if npd_threshold is not None \
            else []
        return model_class + engine, [NAT_SINGLE, NAT_NPD] + (
            [NAT_REFINE] if length_model and not exported else []) + reranked + adaptive
    if generator == "maskpredictgenerator":
        return model_class + engine, MASK_PREDICT[:1] if exported else MASK_PREDICT
    if generator == "daggenerator":
        return model_class + engine, DAG_SETTINGS
    if generator == "speculativegenerator":
        return "AR" + engine, SPECULATIVE
    # greedy's length rules, as the greedy row: the outputs are then the same
    drafted = [(name, {"search": AR_SETTINGS[0][1]["search"], "class": "SpeculativeGenerator",
                       "drafter": drafter, **setting}) for name, setting in SPECULATIVE]
    return "AR" + engine, AR_SETTINGS + (drafted if drafter else [])


def build_for(model: str, setting: Dict[str, Any], quantize: bool, device: str,
              precision: str, libs: List[str], ctranslate2: bool = False):
    """The task of one system at torch's current thread count, which the caller sets: ONNX
    sessions and CTranslate2 fix it when built (a model's training thread count is not
    applied, `open_model_folder`). A CTranslate2 export runs int8 through its compute type,
    not torch's quantization."""
    overrides = [f"task.generator.{k}={v}" for k, v in setting.items() if k != "search"]
    overrides += [f"env.device={device}", f"env.precision={precision}"]
    if ctranslate2:
        overrides.append(f"task.model.threads={torch.get_num_threads()}")
        overrides += ["task.model.compute_type=int8"] if quantize else []
    task = load_trained_task(model, "infer", overrides, search=setting.get("search"), libs=libs,
                             needs=Translator)
    task.generator.eval()
    if quantize and not ctranslate2:
        task.model = torch.ao.quantization.quantize_dynamic(task.model, {torch.nn.Linear},
                                                            dtype=torch.qint8)
        task.generator.model = task.model
    return task


def run(args: argparse.Namespace) -> int:
    exported = any(is_exported(model) for model in args.model)
    if args.device.startswith("cuda") and (args.quantize or exported):
        raise ConfigError("--device cuda: int8 quantization and exported models run on the "
                          "CPU only; leave out --quantize and exported model folders")
    if args.output is None:
        folder = args.model[0] if os.path.isdir(args.model[0]) else os.path.dirname(args.model[0])
        args.output = os.path.join(folder, "decode_speed.json")
    every_line = read_lines(args.input)
    lines = every_line[:args.limit or None]
    if not lines:
        raise DataError(f"--input {args.input}: no sentences to time")
    # BLEU is the whole test set's, also when --limit times only its start
    scoring = ((every_line, read_references(args.reference, len(every_line)))
               if args.reference else None)
    result = {"command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
              "input": args.input, "sentences": len(lines),
              "batch_tokens": args.max_tokens, "repeats": args.repeats, "rounds": args.rounds,
              "machine": describe_machine(args.device), "rows": []}
    systems = build_systems(args, lines, scoring)
    for round_index in range(args.rounds):
        for system in systems:
            torch.set_num_threads(system["row"]["threads"])
            system["timings"].append(time_setting(system["task"], system["split"], args))
            prefix = f"[round {round_index + 1}/{args.rounds}] " if args.rounds > 1 else ""
            print(prefix + format_row({**system["row"], **system["timings"][-1]}), flush=True)
        # after every round: a run cut short keeps what it measured
        result["rows"] = [summarize(system) for system in systems]
        write_json(result, args.output)
    if args.rounds > 1:
        print(f"medians over {args.rounds} rounds:")
        for row in result["rows"]:
            print(format_row(row))
    plot(result["rows"], os.path.splitext(args.output)[0] + ".png")
    return 0


def read_references(path: str, count: int) -> List[str]:
    """A reference file line-aligned with --input: another line count would score the
    systems against the wrong sentences."""
    references = read_lines(path)
    if len(references) != count:
        raise DataError(f"--reference {path}: {len(references)} lines, but --input has {count}")
    return references


def score(task, lines: List[str], references: List[str]) -> Dict[str, Any]:
    """sacreBLEU of one system's output (untimed), with the signature that makes it
    comparable."""
    from sacrebleu.metrics import BLEU  # lazy, as in paragen.metrics

    bleu = BLEU()
    with torch.inference_mode(), releasing_memory():
        value = bleu.corpus_score(task.translate(lines), [references])
    return {"bleu": round(value.score, 2), "bleu_signature": str(bleu.get_signature())}


def build_systems(args: argparse.Namespace, lines: List[str],
                  scoring: Tuple[List[str], List[str]] | None = None) -> List[Dict[str, Any]]:
    """Every (model, setting, precision, int8, threads) built and warmed up once, so that
    rounds can visit them in turn: a machine that slows down for a minute then slows every
    system in that round, not just the one being timed, and the ratios survive."""
    systems = []
    for model in args.model:
        kind, settings = settings_for(model, args.reranker, args.drafter, args.npd_threshold)
        ct2_int8 = kind == CT2 and read_manifest(model).get("quantized") == "int8"
        # int8 quantization applies to PyTorch models and, at load, to a float32 CTranslate2
        # export; another exported one is quantized at export
        quantizable = [False, True] if args.quantize and (
            not is_exported(model) or kind == CT2 and not ct2_int8) else [False]
        # int8 is an fp32 model's variant; bf16 runs unquantized, and only PyTorch models
        # (an exported model's precision was fixed at export)
        variants = [(precision, quantize) for precision in args.precision
                    for quantize in (quantizable if precision == "fp32" else [False])
                    if precision == "fp32" or not is_exported(model)]
        for (name, setting), (precision, quantize), threads in itertools.product(
                settings, variants, args.threads):
            if args.only and name not in args.only:
                continue
            torch.set_num_threads(threads)  # before building: ONNX sessions fix it
            task = build_for(model, setting, quantize, args.device, precision, args.lib,
                             ctranslate2=kind == CT2)
            if kind == CT2:
                label = f"{CT2} {'int8' if quantize or ct2_int8 else 'float32'} {name}"
            else:
                label = " ".join([kind, name] + ([precision] if precision != "fp32" else [])
                                 + (["int8"] if quantize else []))
            split = task.encode(lines)
            warm_up(task, split, args.max_tokens[0])
            row = {"system": label, "model": model, "threads": threads, "device": args.device,
                   "precision": precision}
            if scoring is not None:  # one thread count scores the setting for all
                same = next((s["row"] for s in systems if s["row"]["system"] == label
                             and s["row"]["model"] == model), None)
                row.update({k: same[k] for k in ("bleu", "bleu_signature")} if same
                           else score(task, *scoring))
            systems.append({"task": task, "split": split, "timings": [], "row": row})
    if not systems:
        names = dict.fromkeys(name for model in args.model
                              for name, _ in settings_for(model, args.reranker, args.drafter,
                                                          args.npd_threshold)[1])
        raise ConfigError(f"--only {' '.join(args.only)}: no such setting for these models "
                          f"(they have: {', '.join(names)})")
    return systems


def warm_up(task, split: Dict[str, Any], batch_tokens: int) -> None:
    with torch.inference_mode():
        time_batched(task, {k: v[:64] for k, v in split.items()}, batch_tokens, 1)
        time_batch1(task, {k: v[:16] for k, v in split.items()})


def time_setting(task, split: Dict[str, Any], args: argparse.Namespace) -> Dict[str, Any]:
    """Batch 1 over every sentence, then batched at each token budget."""
    with torch.inference_mode():
        batch1 = time_batch1(task, split)
        batched = [time_batched(task, split, budget, args.repeats) for budget in args.max_tokens]
    return {"batch1": batch1, "batched_at": batched}


def summarize(system: Dict[str, Any]) -> Dict[str, Any]:
    """The median over rounds of each number; every round's own numbers are kept beside."""
    timings = system["timings"]

    def median_of(records: List[Dict[str, float]]) -> Dict[str, float]:
        return {key: statistics.median(r[key] for r in records) for key in records[0]}

    batched = [median_of([t["batched_at"][i] for t in timings])
               for i in range(len(timings[0]["batched_at"]))]
    return {**system["row"], "batch1": median_of([t["batch1"] for t in timings]),
            "batched": batched[0], "batched_at": batched,
            **({"by_round": timings} if len(timings) > 1 else {})}


def describe_machine(device: str) -> str:
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} ({cpu} host), torch {torch.__version__}"
    return f"{cpu}, torch {torch.__version__}"


def write_json(result: Dict[str, Any], path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)


def model_name(row: Dict[str, Any]) -> str:
    """The model's run folder (and checkpoint): two models of one kind share a system label."""
    return model_label(row["model"])


def format_row(row: Dict[str, Any]) -> str:
    batched = "  ".join(f"{b['sentences_per_s']:7.1f} sent/s ({b['batch_tokens']} tok)"
                        for b in row["batched_at"])
    bleu = f"  BLEU {row['bleu']:5.2f}" if "bleu" in row else ""
    return (f"{row['system']:<26} {model_name(row):<28} threads={row['threads']}{bleu}  batch 1: "
            f"{row['batch1']['sentences_per_s']:7.1f} sent/s "
            f"({row['batch1']['ms_per_sentence_median']:6.2f} ms median)  batched: {batched}")
