"""Derive argparse flags from config dataclasses: one kebab-case flag per field, help from the field's comment.

Booleans become `--flag/--no-flag` (never `type=bool`). Flags default to "not given" (argparse.SUPPRESS), so
the caller can tell explicit flags from defaults and layer them over a preset.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _field_comments(cls) -> dict[str, str]:
    """`name: type = default  # help` -> {name: help}, read from the class source (and its bases')."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+)\s*:[^=\n]+=[^#\n]*#\s*(.+)$", src, re.M):
            out[m.group(1)] = m.group(2).strip()
    return out


def add_dataclass_args(parser: argparse.ArgumentParser, cls, group_title: str | None = None,
                       skip: tuple[str, ...] = ()) -> None:
    group = parser.add_argument_group(group_title) if group_title else parser
    helps = _field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tname = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if tname not in _TYPES:
            raise TypeError(f"{cls.__name__}.{f.name}: expected a field of type int/float/str/bool, got {tname}")
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        h = f"{helps.get(f.name, '')} (default: {default})"
        if tname == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=h)
        else:
            group.add_argument(flag, dest=f.name, type=_TYPES[tname], default=argparse.SUPPRESS,
                               metavar=tname.upper(), help=h)


def given(args: argparse.Namespace, cls) -> dict:
    """The fields of `cls` that were given on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}
