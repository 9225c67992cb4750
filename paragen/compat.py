"""ParaGen's config spellings, read as paragen's: a ParaGen YAML loads and trains as it is.

ParaGen (bytedance/ParaGen) configs share our shape (`task:` + `env:`, `class:` keys, the same
module kinds) but name some classes and keys differently and nest a few settings elsewhere.
`from_paragen` rewrites those, each with a one-line notice naming our spelling, so users learn
it as they go:
  * class names: `InMemoryDataLoader` → `DataLoader`, `ShuffleSampler` → `BucketSampler`,
    `InverseSquareRootRateScheduler` → `InverseSquareRoot`, `BeamSearchV2` → `BeamSearch`,
    `DLCLTransformerEncoder` → `TransformerEncoder` with `dlcl: true`, and the classes of
    ParaGen's GLAT plug-in (`GLATModel` → `GLAT`, `GLATTrainer` → `Trainer`, its
    `MultiTaskCriterion{token, length}` → `GlancingCrossEntropy`, `GLATLengthSearcher(beam)` →
    the NAT generator's `length_beam`), which are built in here;
  * keys: `n_head` → `num_heads`, `dim_feedforward` → `ffn_dim`, `max_samples` →
    `max_sentences`, `spm_path` → `model`, `validate_interval_step` → `validate_interval`,
    `save_model_dir` → `save_dir`, `beam` → `beam_size`, ...;
  * moves: a scheduler given as the optimizer's `lr` becomes `trainer.lr_scheduler` (its
    `rate` the optimizer's `lr`); the optimizer's `clip_norm` and `update_frequency` become
    the trainer's; `maxlen_coef: (a, b)` becomes `max_length_a` / `max_length_b`;
  * tuples written as strings, `(0.9, 0.98)`, which ParaGen `eval`ed, are parsed as number
    lists (nothing else is: we never `eval`);
  * keys with no meaning here (`index_only`, `sort_samples`, `add_bos`, ...) are dropped,
    named in the notice.
Our own spellings pass through untouched, so the rewrite is safe on any config.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Callable, Dict

from paragen.errors import ConfigError

logger = logging.getLogger("paragen")

# ParaGen class → (our class, keys it implies)
CLASSES: Dict[str, tuple] = {
    "InMemoryDataLoader": ("DataLoader", {}),
    "ShuffleSampler": ("BucketSampler", {}),
    "BatchShuffleSampler": ("BucketSampler", {}),
    "InverseSquareRootRateScheduler": ("InverseSquareRoot", {}),
    "ConstantRateScheduler": ("Constant", {}),
    "PolynomialDecayScheduler": ("Polynomial", {}),
    "BeamSearchV2": ("BeamSearch", {}),
    "BeamSearchV3": ("BeamSearch", {}),
    "DLCLTransformerEncoder": ("TransformerEncoder", {"dlcl": True}),
    "DLCLTransformerDecoder": ("TransformerDecoder", {"dlcl": True}),
    # ParaGen's GLAT plug-in (`--lib glat`): built in here, glancing lives in the criterion
    "GLATTranslationTask": ("TranslationTask", {}),
    "GLATModel": ("GLAT", {"length_prediction": "absolute"}),
    "NonAutoTransformerDecoder": ("TransformerDecoder", {}),
    "GLATTrainer": ("Trainer", {}),
    "GLATGenerator": ("NATGenerator", {}),
}
# ParaGen values of `share_embedding` → ours
SHARING = {"decoder-input-output": "decoder", "None": "none", None: "none"}
# ParaGen key → our key, wherever it appears in a section with a `class`
KEYS = {
    "n_head": "num_heads", "dim_feedforward": "ffn_dim", "normalize_before": "pre_norm",
    "learn_pos": "learned_positions", "max_pos": "max_positions", "spm_path": "model",
    "validate_interval_step": "validate_interval",
    "save_model_dir": "save_dir", "beam": "beam_size", "max_rate": "lr", "end_rate": "end_lr",
    "max_output_length": "max_length", "save_last_k": "keep_last",
    "early_stopping_tolerance": "early_stopping_patience",
}
SAMPLER_KEYS = {"max_samples": "max_sentences"}  # a dataset's max_samples is ours too
# keys ParaGen needs and paragen does not (what they did happens anyway, or not at all)
DROPPED = {"index_only", "sort_samples", "add_bos", "add_eos", "post_detok", "share_vocab",
           "keepdim", "num_return_sequence", "validate_interval_epoch", "requires_moses_tokenize",
           "assess_reverse", "tensorboard_dir", "save_best_k", "embed_layer_norm", "return_seed",
           "embed_scale"}
ENV_KEYS = {"fp16": ("precision", lambda on: "fp16" if on else "fp32")}
ENV_DROPPED = {"distributed", "backend", "pb_interval", "profiling_window", "debug", "no_warning",
               "log_filename"}
_TUPLE = re.compile(r"^\(\s*([-+\d.eE]+\s*(,\s*[-+\d.eE]+\s*)*),?\s*\)$")


def _notice(path: str, message: str) -> None:
    logger.warning("%s: %s (ParaGen spelling, read as paragen's)", path, message)


def _number(text: str) -> Any:
    value = float(text)
    return int(value) if value.is_integer() and not re.search(r"[.eE]", text) else value


def _parse_tuple(value: Any) -> Any:
    """`"(0.9, 0.98)"` → `[0.9, 0.98]`: numbers only, anything else is left alone."""
    if isinstance(value, str):
        match = _TUPLE.match(value.strip())
        if match:
            return [_number(part.strip()) for part in match.group(1).split(",") if part.strip()]
    return value


def _rename_section(section: Dict[str, Any], path: str) -> None:
    cls = section.get("class")
    if isinstance(cls, str) and cls in CLASSES:
        ours, implied = CLASSES[cls]
        section["class"] = ours
        for key, value in implied.items():
            section.setdefault(key, value)
        extra = "".join(f" with {k}: {str(v).lower()}" for k, v in implied.items())
        _notice(f"{path}.class", f"{cls} is {ours}{extra}")
    renames = {**KEYS, **SAMPLER_KEYS} if path.endswith(".sampler") else KEYS
    for key in list(section):
        if key in renames and renames[key] not in section:
            section[renames[key]] = section.pop(key)
            _notice(f"{path}.{key}", f"now {renames[key]!r}")
        elif key in DROPPED:
            section.pop(key)
            _notice(f"{path}.{key}", "not needed here, ignored")
    if "share_embedding" in section and section["share_embedding"] in SHARING:
        old = section["share_embedding"]
        section["share_embedding"] = SHARING[old]
        _notice(f"{path}.share_embedding", f"{old} is {SHARING[old]}")
    for key, value in list(section.items()):
        section[key] = _parse_tuple(value)


def _move_optimizer_settings(trainer: Dict[str, Any], path: str) -> None:
    """ParaGen nests the scheduler in the optimizer's `lr`, and clipping and accumulation in
    the optimizer; paragen's trainer owns all three."""
    optimizer = trainer.get("optimizer")
    if not isinstance(optimizer, dict):
        return
    lr = optimizer.get("lr")
    if isinstance(lr, dict) and "class" in lr and "lr_scheduler" not in trainer:
        scheduler = dict(lr)
        _rename_section(scheduler, f"{path}.optimizer.lr")
        if scheduler["class"] == "NoamScheduler":  # d^-0.5 · min(step^-0.5, step · w^-1.5)
            warmup = int(scheduler.get("warmup_steps", 4000))
            optimizer["lr"] = float(scheduler.pop("d_model")) ** -0.5 * warmup ** -0.5
            scheduler = {"class": "InverseSquareRoot", "warmup_steps": warmup}
        else:
            optimizer["lr"] = scheduler.pop("rate", scheduler.pop("lr", None))
            if optimizer["lr"] is None:
                optimizer.pop("lr")
        trainer["lr_scheduler"] = scheduler
        _notice(f"{path}.optimizer.lr", "a scheduler here is task.trainer.lr_scheduler, its "
                                        "rate the optimizer's lr")
    for old, new in (("clip_norm", "clip_norm"), ("update_frequency", "update_freq")):
        if old in optimizer:
            trainer.setdefault(new, optimizer.pop(old))
            _notice(f"{path}.optimizer.{old}", f"is task.trainer.{new}")


def _glat_criterion(section: Dict[str, Any], path: str) -> None:
    """GLAT's `MultiTaskCriterion{token: LabelSmoothedCrossEntropy, length: CrossEntropy}` is
    one criterion here, which also does the glancing ParaGen's GLATTrainer did."""
    parts = section.get("criterions")
    if section.get("class") != "MultiTaskCriterion" or not isinstance(parts, dict):
        return
    token, length = parts.get("token", {}), parts.get("length", {})
    section.clear()
    section.update({"class": "GlancingCrossEntropy", "epsilon": token.get("epsilon", 0.1),
                    "length_loss_weight": length.get("weight", 0.1)})
    _notice(f"{path}.class", "GLAT's MultiTaskCriterion{token, length} is GlancingCrossEntropy "
                             "(glancing included)")


def _glat_search(generator: Dict[str, Any], path: str) -> None:
    """GLATLengthSearcher(beam) is the NAT generator's own `length_beam`."""
    search = generator.get("search")
    if isinstance(search, dict) and search.get("class") == "GLATLengthSearcher":
        generator.pop("search")
        generator.setdefault("length_beam", search.get("beam", 7))
        _notice(f"{path}.search", f"GLATLengthSearcher is the generator's length_beam: "
                                  f"{generator['length_beam']}")


def _split_maxlen_coef(search: Dict[str, Any], path: str) -> None:
    if "maxlen_coef" in search:
        coef = _parse_tuple(search.pop("maxlen_coef"))
        if not (isinstance(coef, list) and len(coef) == 2):
            raise ConfigError(f"{path}.maxlen_coef: expected (a, b), got {coef!r}")
        search.setdefault("max_length_a", float(coef[0]))
        search.setdefault("max_length_b", int(coef[1]))
        _notice(f"{path}.maxlen_coef", "is max_length_a and max_length_b")


def _walk(node: Any, path: str, visit: Callable[[Dict[str, Any], str], None]) -> None:
    if isinstance(node, dict):
        if "class" in node:
            visit(node, path)
        for key, value in node.items():
            _walk(value, f"{path}.{key}", visit)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk(value, f"{path}[{i}]", visit)


def from_paragen(config: Dict[str, Any]) -> Dict[str, Any]:
    """`config` (changed in place and returned) with ParaGen's spellings turned into ours."""
    task = config.get("task")
    if isinstance(task, dict):
        trainer = task.get("trainer")
        if isinstance(trainer, dict):
            _move_optimizer_settings(trainer, "task.trainer")
        tokenizer = task.get("tokenizer")
        per_language = tokenizer.items() if isinstance(tokenizer, dict) and \
            "class" not in tokenizer else [("", tokenizer)]
        for lang, one in per_language:
            if isinstance(one, dict) and one.get("class") in ("FastBPE", "Vocabulary"):
                where = f"task.tokenizer.{lang}.class" if lang else "task.tokenizer.class"
                raise ConfigError(f"{where}: ParaGen's {one['class']} vocabulary files are not "
                                  f"read here; learn a SentencePiece model (`paragen "
                                  f"build-tokenizer`) and use SentencePieceTokenizer")

        def visit(section: Dict[str, Any], path: str) -> None:
            if path == "task.criterion":
                _glat_criterion(section, path)
            if path == "task.generator":
                _glat_search(section, path)
            _rename_section(section, path)
            if path.endswith(".search"):
                _split_maxlen_coef(section, path)
            if section.get("class") == "BLEU" and section.pop("no_tok", False):
                section["tokenize"] = "none"
                _notice(f"{path}.no_tok", "is tokenize: none")

        _walk(task, "task", visit)
        for key in [k for k in task if k in DROPPED]:
            task.pop(key)
            _notice(f"task.{key}", "not needed here, ignored")
    env = config.get("env")
    if isinstance(env, dict):
        for old, (new, convert) in ENV_KEYS.items():
            if old in env and new not in env:
                env[new] = convert(env.pop(old))
                _notice(f"env.{old}", f"is env.{new}: {env[new]}")
        for key in [k for k in env if k in ENV_DROPPED]:
            env.pop(key)
            _notice(f"env.{key}", "not needed here, ignored")
    return config
