"""Derive argparse flags from config dataclasses: one kebab-case flag per field, help from the field's comment.

Booleans become `--flag/--no-flag` (never `type=bool`); tuple fields take a comma-separated list whose
element type is that of the default's elements. Help comes from `field(metadata={"help": ...})` or else the
field's trailing comment. Flags default to "not given" (argparse.SUPPRESS), so the caller can tell explicit
flags from defaults and layer them over a preset.
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


def _list_of(elem: type):
    def parse(text: str) -> tuple:
        try:
            return tuple(elem(v) for v in text.split(",") if v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {elem.__name__}, "
                                             f"got {text!r}") from None
    return parse


def add_dataclass_args(parser: argparse.ArgumentParser, cls, group_title: str | None = None,
                       skip: tuple[str, ...] = ()) -> None:
    group = parser.add_argument_group(group_title) if group_title else parser
    helps = _field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tname = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if tname not in _TYPES and tname != "tuple":
            raise TypeError(f"{cls.__name__}.{f.name}: expected a field of type int/float/str/bool/tuple, "
                            f"got {tname}")
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        helptext = f.metadata.get("help") or helps.get(f.name, "")
        if tname == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=f"{helptext} (default: {default})")
        elif tname == "tuple":
            elem = type(default[0]) if default else str
            shown = ",".join(map(str, default or ()))
            group.add_argument(flag, dest=f.name, type=_list_of(elem), default=argparse.SUPPRESS,
                               metavar="A,B,...", help=f"{helptext} (comma-separated; default: {shown})")
        else:
            group.add_argument(flag, dest=f.name, type=_TYPES[tname], default=argparse.SUPPRESS,
                               metavar=tname.upper(), help=f"{helptext} (default: {default})")


def given(args: argparse.Namespace, cls) -> dict:
    """The fields of `cls` that were given on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}
