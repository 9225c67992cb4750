"""Config → environment → task: how every verb builds what it runs.

`build_task` is the one place a config becomes objects: the environment is set up (device,
seed, threads, `--lib` plug-ins), every `class:` in the config is checked against the
registries before any file is read, and the task assembles its components. `load_trained_task`
does the same from a model folder, reading its checkpoint once.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

# Importing the built-in packages registers their classes (`@register_model` ...).
import paragen.criteria  # noqa: F401
import paragen.dataloaders  # noqa: F401
import paragen.datasets  # noqa: F401
import paragen.decoders  # noqa: F401
import paragen.encoders  # noqa: F401
import paragen.evaluators  # noqa: F401
import paragen.generators  # noqa: F401
import paragen.lr_schedulers  # noqa: F401
import paragen.metrics  # noqa: F401
import paragen.models  # noqa: F401
import paragen.optim  # noqa: F401
import paragen.samplers  # noqa: F401
import paragen.search  # noqa: F401
import paragen.tokenizers  # noqa: F401
import paragen.trainers  # noqa: F401
from paragen.checkpoint import assign_weights
from paragen.config import apply_overrides, migrate_model_config, parse_overrides
from paragen.env import build_env, import_libs
from paragen.errors import ConfigError
from paragen.interfaces import missing_members
from paragen.model_folder import open_model_folder
from paragen.registry import build, check_config, lookup
# Importing the tasks registers them.
from paragen.tasks.classification import SequenceClassificationTask  # noqa: F401
from paragen.tasks.masked_lm import MaskedLMTask  # noqa: F401
from paragen.tasks.multilingual import MultilingualTranslationTask  # noqa: F401
from paragen.tasks.qa import ExtractiveQATask  # noqa: F401
from paragen.tasks.regression import SequenceRegressionTask  # noqa: F401
from paragen.tasks.seq2seq import Seq2SeqTask  # noqa: F401
from paragen.tasks.translation import TranslationTask  # noqa: F401

logger = logging.getLogger("paragen")


def build_task(config: Dict[str, Any], libs: List[str] = (), base_dir: str = "."):
    """The built task of `config` (a dict with `task` and `env`), plug-ins `libs` imported."""
    env_config = dict(config.get("env") or {})
    env_config["custom_libs"] = split_libs(env_config.get("custom_libs", [])) + split_libs(libs)
    # recorded in the config a checkpoint stores: a model trained with `--lib X` tells
    # `generate` without it which plug-in it needs
    config["env"] = {**(config.get("env") or {}), "custom_libs": env_config["custom_libs"]}
    env = build_env(env_config).setup()
    if isinstance(config["task"].get("model"), dict):
        migrate_model_config(config["task"]["model"])
    check_config(config["task"], "task", "task")
    return build("task", config["task"], "task", env=env, config=config,
                 base_dir=base_dir).build()


def split_libs(libs) -> List[str]:
    """`--lib a,b --lib c` and `custom_libs: a,b` → ['a', 'b', 'c']."""
    items = libs.split(",") if isinstance(libs, str) else list(libs)
    return [part for item in items for part in str(item).split(",") if part]


def search_for_beam(beam: Optional[int]) -> Optional[Dict[str, Any]]:
    """`--beam N` on the command line: 1 means greedy search, None keeps the stored search."""
    if beam is None:
        return None
    return {"class": "GreedySearch"} if beam == 1 else {"class": "BeamSearch", "beam_size": beam}


def load_trained_task(model: str, mode: str, overrides: List[str] = (),
                      data: Optional[Dict[str, Any]] = None, libs: List[str] = (),
                      search: Optional[Dict[str, Any]] = None,
                      inputs: Optional[Dict[str, Optional[str]]] = None,
                      needs: Optional[type] = None, needed_by: str = "this command"):
    """Build the task stored in a model folder, in `mode` (`infer` or `evaluate`), with its
    weights.

    `data` replaces the stored data splits (evaluate on other files); `inputs` does the same
    from command-line files (`{"input": ..., "reference": ...}`), read as the task's
    `input_data` says (a translation needs both files, a classifier's TSV holds its labels).
    Overrides apply last, so `--task.generator.search.beam_size 8` widens the beam; `search`
    replaces the whole search config (switching class, e.g. beam → greedy, changes which
    keys are valid). `needs` is the contract the verb drives the task through (a Protocol of
    `paragen.interfaces`, e.g. `Translator`): a task without its members is refused before
    its weights load, in a message that names `needed_by`. Plug-ins the model was trained
    with are never imported from the folder: they must be named in `libs`.
    """
    folder = open_model_folder(model)
    config = folder.config
    task_cfg = config["task"]
    task_cfg["mode"] = mode
    missing_libs = [lib for lib in folder.stored_libs if lib not in split_libs(libs)]
    task_class = _with_plugin_hint(lambda: _task_class(task_cfg, libs), missing_libs)
    missing = missing_members(task_class, needs) if needs else []
    if missing:
        raise ConfigError(f"{model}: holds a {task_class.__name__}; {needed_by} works with "
                          f"tasks that have {', '.join(missing)} "
                          f"(paragen.interfaces.{needs.__name__})")
    if search is not None and not hasattr(task_class, "translate"):
        raise ConfigError(f"--beam applies to translation models (any Seq2SeqTask); {model} "
                          f"holds a {task_class.__name__}")
    if inputs is not None:
        data = task_class.input_data(task_cfg, **inputs)
    if folder.exported:
        task_cfg["model"]["path"] = folder.folder
    else:
        task_cfg["model"].pop("path", None)  # the weights come from this folder, read once
    for key in ("trainer", "criterion"):
        task_cfg.pop(key, None)
    if search is not None:
        generator = task_cfg.setdefault("generator", {"class": "SequenceGenerator"})
        if str(generator.get("class", "")).lower() == "ctranslate2generator":
            generator["beam_size"] = search.get("beam_size", 1)  # CTranslate2 runs the search
            search = None
    if search is not None:
        if str(generator.get("class", "")).lower() != "sequencegenerator":
            raise ConfigError(f"--beam applies to autoregressive models; {model} uses "
                              f"{generator.get('class')} (try --task.generator.length_beam 5)")
        generator["search"] = search
    if data is not None:
        task_cfg["data"] = data
    elif "data" in task_cfg:
        task_cfg["data"] = {k: v for k, v in task_cfg["data"].items() if k != "train"}
    config = apply_overrides(config, parse_overrides(overrides))
    unknown_top = sorted(set(config) - {"task", "env"})
    if unknown_top:
        raise ConfigError(f"{unknown_top[0]}: unknown override section; overrides start with "
                          f"task. or env. (e.g. --task.generator.length_beam 5)")
    task = _with_plugin_hint(lambda: build_task(config, libs, base_dir=folder.folder),
                             missing_libs)
    if folder.weights is not None:
        assign_weights(task.model, folder.weights, folder.checkpoint)
    return task


def _task_class(task_cfg: Dict[str, Any], libs: List[str]) -> type:
    """The registered class of a stored task; the plug-ins named on the command line are
    imported first (never the ones the folder names)."""
    import_libs(split_libs(libs))
    return lookup("task", task_cfg.get("class"), "task")


def _with_plugin_hint(action, missing_libs: List[str]):
    """Run `action`; a config error in a model trained with plug-ins not passed now says
    which --lib to add."""
    try:
        return action()
    except ConfigError as err:
        if missing_libs:
            raise ConfigError(f"{err} — this model was trained with plug-in(s) "
                              f"{', '.join(missing_libs)}: pass --lib "
                              f"{' --lib '.join(missing_libs)} (a model folder never imports "
                              f"code by itself)") from None
        raise
