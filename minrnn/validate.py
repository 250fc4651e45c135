"""Checks of config values that say what was expected and what was given (bools are not numbers here)."""
from __future__ import annotations

import math


def check_int(name: str, v, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name}: expected an integer >= {lo}, got {v!r}")


def check_float(name: str, v, lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = True) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ValueError(f"{name}: expected a finite number in {rng}, got {v!r}")


def check_choice(name: str, v, choices) -> None:
    if v not in choices:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, got {v!r}")
