"""Every environment variable minrnn reads, in one place (`minrnn info` prints them).

They are read when asked for (so a test or a launcher may set them), never written: there is no process-global
switch to flip at run time. Per-layer and per-call choices are arguments (`scan_impl=`, `cpu_matmul=`).
"""
from __future__ import annotations

import os
from pathlib import Path

# name -> (default, what it does)
VARIABLES = {
    "MINRNN_DATA": ("../shared/data", "folder of data that cannot be downloaded (must exist when set)"),
    "MINRNN_CACHE": ("~/.cache/minrnn", "where the compiled CPU kernels are cached"),
    "MINRNN_DISABLE_NATIVE": ("", "1: never build or load the compiled CPU kernels (auto then runs 'chunked')"),
    "MINRNN_KERNEL_MATMUL": ("auto", "default of the layers' cpu_matmul: auto | off | always"),
    "MINRNN_DISABLE_FAST_STEP": ("", "1: generation and RL acting use the PyTorch step, not the compiled one"),
}
MATMUL_MODES = ("auto", "off", "always")


def get(name: str) -> str:
    """The value of one of VARIABLES ('' when unset and the default is shown only for information)."""
    if name not in VARIABLES:
        raise KeyError(f"{name}: expected one of {sorted(VARIABLES)}")
    return os.environ.get(name, "")


def flag(name: str) -> bool:
    return get(name) not in ("", "0")


def cache_dir() -> Path:
    return Path(get("MINRNN_CACHE") or Path.home() / ".cache" / "minrnn").expanduser()


def default_cpu_matmul() -> str:
    mode = get("MINRNN_KERNEL_MATMUL") or "auto"
    if mode not in MATMUL_MODES:
        raise ValueError(f"MINRNN_KERNEL_MATMUL: expected one of {MATMUL_MODES}, got {mode!r}")
    return mode


def describe() -> list[str]:
    """One line per variable: name=value (or its default) and what it does."""
    out = []
    for name, (default, what) in VARIABLES.items():
        v = os.environ.get(name)
        shown = f"{name}={v}" if v is not None else f"{name} unset (default {default or 'off'})"
        out.append(f"{shown}: {what}")
    return out
