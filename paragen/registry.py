"""One registry per module kind, and `build()` that turns a config dict into an object.

A config is a plain dict whose `class` key names a registered class; the other keys are the
constructor's keyword arguments. Values are checked against the constructor's type hints, so a
typo or a wrong type fails at start-up with the full config path (`task.model.encoder.num_layers`)
rather than an hour into training. Nothing here ever `eval`s a value.
"""
from __future__ import annotations

import difflib
import inspect
import logging
import types
import typing
from typing import Any, Callable, Dict, Tuple, Type

from paragen.errors import ConfigError, ParagenError

logger = logging.getLogger("paragen")

KINDS = (
    "task", "model", "encoder", "decoder", "search", "generator", "criterion", "dataset",
    "sampler", "dataloader", "tokenizer", "trainer", "evaluator", "metric", "optimizer",
    "lr_scheduler",
)

_REGISTRIES: Dict[str, Dict[str, type]] = {kind: {} for kind in KINDS}


def _closest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def register(kind: str, name: str | None = None) -> Callable[[type], type]:
    """Class decorator: `@register("model")`. Lookup is by class name, case-insensitive."""
    if kind not in _REGISTRIES:
        raise ValueError(f"unknown registry kind {kind!r}; kinds are {', '.join(KINDS)}")

    def decorator(cls: type) -> type:
        key = (name or cls.__name__).lower()
        existing = _REGISTRIES[kind].get(key)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"{kind} {cls.__name__!r} is already registered by {existing.__module__}")
        _REGISTRIES[kind][key] = cls
        return cls

    return decorator


def add_kind(kind: str) -> Callable:
    """A new module kind from a plug-in (ParaGen's `setup_registry`): creates its registry and
    returns its `register_<kind>` decorator; `build(kind, config, path)` then builds its
    classes like any built-in kind's. Adding an existing kind returns its decorator."""
    if not kind.isidentifier() or not kind.islower():
        raise ValueError(f"a module kind is a lower-case identifier, got {kind!r}")
    _REGISTRIES.setdefault(kind, {})
    return _decorator_for(kind)


def kinds() -> Tuple[str, ...]:
    """Every module kind: the built-in `KINDS`, then those plug-ins added."""
    return tuple(_REGISTRIES)


def registered(kind: str) -> Dict[str, type]:
    """The classes registered for a kind, keyed by lower-case name."""
    return dict(_REGISTRIES[kind])


def lookup(kind: str, class_name: str, path: str = "") -> type:
    """The class registered under `class_name` (case-insensitive) for `kind`.

    Built-in classes are registered when their package is imported; `paragen.tasks.build`
    imports them all, plug-ins are imported by `--lib`.
    """
    table = _REGISTRIES[kind]
    cls = table.get(str(class_name).lower())
    if cls is None:
        names = sorted(c.__name__ for c in table.values())
        raise ConfigError(
            f"{path + '.class' if path else 'class'}: unknown {kind} class {class_name!r}"
            f"{_closest(str(class_name), names)} (registered: {', '.join(names) or 'none'}; "
            f"`paragen list {kind}` shows their arguments)")
    return cls


def build(kind: str, config: Dict[str, Any] | None, path: str, /, **runtime: Any) -> Any:
    """Build a `kind` object from `config` (a dict with `class`).

    `runtime` holds objects the parent supplies (vocabulary size, a built model, ...): they are
    passed to the constructor too, but are not user-facing config keys.
    """
    if not isinstance(config, dict) or "class" not in config:
        raise ConfigError(f"{path}: expected a mapping with a 'class' key, got {config!r}")
    cls = lookup(kind, config["class"], path)
    kwargs = {k: v for k, v in config.items() if k != "class"}
    kwargs = check_arguments(cls, kwargs, path, runtime)
    try:
        return cls(**kwargs, **runtime)
    except ParagenError:
        raise
    except TypeError as err:
        # Most often a plug-in class whose constructor does not take the runtime arguments
        # its parent passes (pad_id, vocabulary sizes, the model ...).
        if runtime and "argument" in str(err):
            raise ConfigError(f"{path}: {cls.__name__} cannot be built with the arguments "
                              f"paragen passes ({', '.join(sorted(runtime))}): {err}") from err
        raise
    except ValueError as err:  # a constructor rejecting a value: name the key's section
        message = str(err)
        raise ConfigError(message if message.startswith(path)
                          else f"{path} ({cls.__name__}): {message}") from err


def check_arguments(cls: type, kwargs: Dict[str, Any], path: str,
                    runtime: Dict[str, Any] | None = None) -> Dict[str, Any]:
    """Validate `kwargs` against `cls.__init__`: unknown, missing and mistyped keys."""
    runtime = runtime or {}
    kwargs = _rename_keys(cls, kwargs, path)
    own = {n: p for n, p in inspect.signature(cls.__init__).parameters.items()
           if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    params, hints, accepts_any = constructor_parameters(cls)
    user_facing = [n for n, p in params.items() if n not in runtime and p.kind != p.KEYWORD_ONLY]
    for key in kwargs:
        if key not in params and not accepts_any:
            raise ConfigError(
                f"{path}.{key}: unexpected key for {cls.__name__}{_closest(key, user_facing)}"
                f" (valid keys: {', '.join(user_facing)})")
    for name, p in own.items():  # a base's required key may be filled in by the subclass
        if p.default is p.empty and name not in kwargs and name not in runtime:
            raise ConfigError(f"{path}.{name}: missing required key for {cls.__name__}")
    checked = dict(kwargs)
    for key, value in kwargs.items():
        if key in hints:
            checked[key] = coerce(value, hints[key], f"{path}.{key}")
    return checked


def constructor_parameters(cls: type) -> Tuple[Dict[str, inspect.Parameter], Dict[str, Any],
                                                bool]:
    """The keys `cls` can be built with, their type hints, and whether it takes any key.

    A subclass that forwards `**options` to its base (a plug-in's `class MyGLAT(GLAT)`) takes
    the base's keys too, so they are followed up the class hierarchy until a constructor
    without `**` closes the set. Only a `**` that reaches past every paragen constructor
    (into torch's or Python's) means "any key"."""
    params: Dict[str, inspect.Parameter] = {}
    hints: Dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object or klass.__module__.split(".")[0] == "torch":
            return params, hints, True
        try:
            own_hints = typing.get_type_hints(init)
        except Exception:  # unresolvable forward references: skip type checks, keep the rest
            own_hints = {}
        signature = inspect.signature(init)
        for name, p in signature.parameters.items():
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) \
                    and name not in params:
                params[name] = p
                if name in own_hints:
                    hints[name] = own_hints[name]
        if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
            return params, hints, False
    return params, hints, True


def _rename_keys(cls: type, kwargs: Dict[str, Any], path: str) -> Dict[str, Any]:
    """Accept a key's former name (a class's `renamed_keys = {old: new}`), with a notice."""
    renamed = getattr(cls, "renamed_keys", None) or {}
    if not any(old in kwargs for old in renamed):
        return kwargs
    updated = {}
    for key, value in kwargs.items():
        new = renamed.get(key)
        if new is None:
            updated[key] = value
        elif new in kwargs:
            raise ConfigError(f"{path}.{key}: {key!r} is the old name of {new!r}; give only one")
        else:
            logger.warning("%s.%s: now spelled %r (the old name still works)", path, key, new)
            updated[new] = value
    return updated


def check_config(node: Any, path: str, kind: str | None = None) -> None:
    """Check every `class:` mapping in a config tree before anything is built or read.

    The class must be registered (for `kind` when the key names one, e.g. `model`, or for any
    kind) and its keys must fit its constructor, so that a typo in `task.model.class` is
    reported before a missing data file would be. Keyword-only constructor arguments are
    the runtime objects parents pass, so they count as given.
    """
    if isinstance(node, list):
        for i, item in enumerate(node):
            check_config(item, f"{path}[{i}]", kind)
        return
    if not isinstance(node, dict):
        return
    children_kind: Dict[str, str] = {}
    if "class" in node:
        cls = lookup(kind, node["class"], path) if kind else _lookup_any(node["class"], path)
        signature = inspect.signature(cls.__init__)
        runtime = {n: None for n, p in signature.parameters.items() if p.kind == p.KEYWORD_ONLY}
        check_arguments(cls, {k: v for k, v in node.items() if k != "class"}, path, runtime)
    elif kind:  # a mapping of named components of one kind (data splits, per-language ...)
        children_kind = {key: kind for key in node}
    for key, value in node.items():
        if key != "class":
            child_kind = children_kind.get(key) or _KIND_OF_KEY.get(key)
            check_config(value, f"{path}.{key}", child_kind)


# Config keys whose value is a component of a known kind, or a mapping of named ones
# (`data: {train: {...}, valid: {...}}`).
_KIND_OF_KEY = {**{kind: kind for kind in KINDS}, "data": "dataset", "metric": "metric"}


def _lookup_any(class_name: Any, path: str) -> type:
    for table in _REGISTRIES.values():
        cls = table.get(str(class_name).lower())
        if cls is not None:
            return cls
    names = sorted({c.__name__ for table in _REGISTRIES.values() for c in table.values()})
    raise ConfigError(f"{path}.class: unknown class {class_name!r}"
                      f"{_closest(str(class_name), names)}")


def coerce(value: Any, hint: Any, path: str) -> Any:
    """Check `value` against a type hint; convert only lossless cases (int→float, '5e-4'→float).

    PyYAML reads `5e-4` (no dot) as a string, which every ML config contains, so a float-typed
    key accepts a numeric string. Anything else of the wrong type is an error.
    """
    if hint is Any or value is None and _allows_none(hint):
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return coerce(value, option, path)
            except ConfigError:
                pass
        raise ConfigError(f"{path}: expected {_type_name(hint)}, got {value!r}")
    if origin is typing.Literal:
        if value in typing.get_args(hint):
            return value
        raise ConfigError(f"{path}: expected one of {list(typing.get_args(hint))}, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        if isinstance(value, (list, tuple)):
            args = typing.get_args(hint)
            if args and args[-1] is not Ellipsis and origin is tuple and len(args) == len(value):
                return tuple(coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
            if args:
                inner = args[0]
                items = [coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
                return tuple(items) if origin is tuple else items
            return value
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return value
    else:
        return value  # classes, callables and other hints are not checked here
    raise ConfigError(f"{path}: expected {_type_name(hint)}, got {value!r} ({type(value).__name__})")


def _allows_none(hint: Any) -> bool:
    return hint is type(None) or type(None) in typing.get_args(hint)


def _type_name(hint: Any) -> str:
    """`int`, `int or 'auto'`, `list[int]`: how a config key's expected type reads in an error."""
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(option) for option in typing.get_args(hint))
    if origin is typing.Literal:
        return " or ".join(repr(option) for option in typing.get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _decorator_for(kind: str):
    def decorator(cls: Type | None = None, *, name: str | None = None):
        if cls is None:
            return register(kind, name)
        return register(kind, name)(cls)
    decorator.__name__ = f"register_{kind}"
    decorator.__doc__ = f"Register a {kind} class: `@register_{kind}` above the class."
    return decorator


register_task = _decorator_for("task")
register_model = _decorator_for("model")
register_encoder = _decorator_for("encoder")
register_decoder = _decorator_for("decoder")
register_search = _decorator_for("search")
register_generator = _decorator_for("generator")
register_criterion = _decorator_for("criterion")
register_dataset = _decorator_for("dataset")
register_sampler = _decorator_for("sampler")
register_dataloader = _decorator_for("dataloader")
register_tokenizer = _decorator_for("tokenizer")
register_trainer = _decorator_for("trainer")
register_evaluator = _decorator_for("evaluator")
register_metric = _decorator_for("metric")
register_optimizer = _decorator_for("optimizer")
register_lr_scheduler = _decorator_for("lr_scheduler")
