"""`paragen list [KIND [NAME]]`: the registered classes, their arguments and what they are.

    paragen list                     every kind and its classes, one line each
    paragen list model               the models, with each constructor argument
    paragen list model GLAT          one class: its whole description and arguments
    paragen list --lib my_lib ...    plug-ins' classes too

Arguments are the keys a config may give (`class: GLAT` + these); keyword-only constructor
arguments are the runtime objects a parent passes (vocabulary sizes, the built model) and are
not listed. docs/reference.md is `paragen list --markdown`, checked by a test to match.
"""
from __future__ import annotations

import argparse
import inspect
import re
from typing import Iterable, List

from paragen.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", help="a module kind (model, criterion, generator, ...)")
    parser.add_argument("name", nargs="?", help="one class of that kind")
    parser.add_argument("--lib", action="append", default=[],
                        help="import a plug-in library first (repeatable)")
    parser.add_argument("--markdown", action="store_true",
                        help="print every kind as the Markdown of docs/reference.md")


def run(args: argparse.Namespace) -> int:
    import paragen.tasks.build  # noqa: F401  (registers every built-in class)
    from paragen.env import import_libs
    from paragen.registry import kinds, lookup

    import_libs(args.lib)
    known = kinds()  # plug-ins may add kinds
    if args.markdown:
        print(reference_markdown(), end="")
    elif args.kind is None:
        for kind in known:
            print(f"{kind}:")
            for cls in _classes(kind):
                print(f"  {cls.__name__:28} {summary(cls)}")
    elif args.kind not in known:
        raise ConfigError(f"paragen list: unknown kind {args.kind!r}; kinds are "
                          f"{', '.join(known)}")
    elif args.name is None:
        for cls in _classes(args.kind):
            print(f"{cls.__name__}: {summary(cls)}")
            for line in argument_lines(cls):
                print(f"    {line}")
    else:
        cls = lookup(args.kind, args.name, f"paragen list {args.kind}")
        print(f"{cls.__name__} ({args.kind}, {cls.__module__})\n")
        print(description(cls) + "\n")
        print("arguments:" if argument_lines(cls) else "no arguments")
        for line in argument_lines(cls):
            print(f"    {line}")
    return 0


def _classes(kind: str) -> List[type]:
    from paragen.registry import registered

    return sorted(registered(kind).values(), key=lambda cls: cls.__name__.lower())


def description(cls: type) -> str:
    """The class's docstring, after its module's for a built-in class (a model file's
    describes the model it holds; a plug-in's module docstring is about the plug-in)."""
    module_doc = inspect.getdoc(inspect.getmodule(cls)) \
        if cls.__module__.startswith("paragen.") else None
    parts = [module_doc, inspect.getdoc(cls) if cls.__doc__ else None]
    return "\n\n".join(part.strip() for part in parts if part)


def summary(cls: type) -> str:
    """The first sentence of the class's docstring, or of its module's when the class has
    none or starts by listing its arguments."""
    for doc in (inspect.getdoc(cls) if cls.__doc__ else None,
                inspect.getdoc(inspect.getmodule(cls))):
        if doc and not doc.startswith("`"):
            return first_sentence(" ".join(doc.strip().split("\n\n")[0].split()))
    return ""


ABBREVIATIONS = ("e.g", "i.e", "al", "etc", "vs", "cf")


def first_sentence(paragraph: str) -> str:
    """Up to the first full stop that ends a sentence (not "e.g." or "et al.", and followed
    by a capital or nothing)."""
    for end in re.finditer(r"\.(\s+|$)", paragraph):
        before, after = paragraph[:end.start()], paragraph[end.end():]
        if before.split()[-1].lower() in ABBREVIATIONS or after[:1].islower():
            continue
        return before + "."
    return paragraph


def argument_lines(cls: type) -> List[str]:
    """`name: type = default` for each config key of the constructor, with those a subclass
    forwards to its base through `**options`."""
    from paragen.registry import constructor_parameters

    lines = []
    for name, param in constructor_parameters(cls)[0].items():
        if param.kind == param.KEYWORD_ONLY:
            continue
        annotation = "" if param.annotation is param.empty else f": {_type_name(param)}"
        default = " (required)" if param.default is param.empty \
            else f" = {param.default!r}"
        lines.append(f"{name}{annotation}{default}")
    return lines


def _type_name(param: inspect.Parameter) -> str:
    annotation = param.annotation
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__",
                                                                  str(annotation))


def reference_markdown() -> str:
    """docs/reference.md: every registered built-in class, by kind."""
    from paragen.registry import KINDS

    parts = ["# Reference: every registered class\n",
             "Generated by `paragen list --markdown` (a test checks it matches). A config names "
             "a class with `class:` and gives the arguments below as keys; `paragen list KIND "
             "NAME` shows one class with its whole description.\n"]
    for kind in KINDS:
        parts.append(f"\n## {kind}\n")
        for cls in _classes(kind):
            if not cls.__module__.startswith("paragen."):
                continue  # a plug-in imported in this process
            parts.append(f"\n### {cls.__name__}\n\n{summary(cls)}\n")
            parts.extend(_markdown_arguments(argument_lines(cls)))
    return "".join(parts)


def _markdown_arguments(lines: Iterable[str]) -> List[str]:
    lines = list(lines)
    return ["\n" + "".join(f"- `{line}`\n" for line in lines)] if lines else []
