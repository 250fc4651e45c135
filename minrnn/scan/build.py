"""Building the C kernels (`csrc/`) with the system compiler on first use, cached, and loading them with ctypes.

No PyTorch headers are involved, so a build takes seconds, once. The cached library's name carries a hash of
everything that changes the binary: the sources and headers, the compiler and its version, the flags, and the
CPU (model and ISA flags), because `-march=native` code from another CPU model can die with SIGILL in a shared
home or image. Where `-fopenmp` does not work (Apple clang, some MinGW set-ups) the kernels are built without
it and run on one thread, still correct. Writes are atomic (temp file, then rename).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

from .. import settings

CSRC = Path(__file__).resolve().parent.parent / "csrc"
# -fno-trapping-math lets gcc if-convert (and so vectorise) the branchy gate math; results are unchanged.
BASE_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", "-shared", "-fPIC"]
OPENMP = ["-fopenmp"]


def compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler found (install gcc or set CC)")
    if shutil.which(cc) is None:
        raise RuntimeError(f"C compiler: expected an executable, got CC={cc!r}")
    return cc


@functools.lru_cache(maxsize=None)
def compiler_version(cc: str) -> str:
    try:
        r = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        return (r.stdout.splitlines() or [""])[0]
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.lru_cache(maxsize=None)
def cpu_identity() -> str:
    """The CPU model and its ISA flags (Linux: /proc/cpuinfo), else what `platform` knows."""
    model = flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Processor", "cpu model") and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    return f"{platform.machine()}|{model or platform.processor()}|{flags}"


def cache_key(sources: bytes, cc: str, flags: list[str], libs: tuple[str, ...] = ()) -> str:
    """Hash of everything that changes the built library (see the module docstring)."""
    parts = [cc, compiler_version(cc), *flags, *libs, cpu_identity()]
    return hashlib.sha256(sources + "\0".join(parts).encode()).hexdigest()[:16]


def compile_library(name: str, srcs: list[Path], flags: list[str], headers: tuple[Path, ...] = (),
                    libs: tuple[str, ...] = ()) -> Path:
    """Compile `srcs` into `<cache>/{name}_{key}.so`; returns its path. RuntimeError with the compiler's
    message when no compiler is found or compilation fails."""
    cc = compiler()
    src = b"".join(p.read_bytes() for p in [*srcs, *headers])
    out = settings.cache_dir() / f"{name}_{cache_key(src, cc, flags, libs)}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    cmd = [cc, *flags, *map(str, srcs), "-o", tmp, *libs]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"compiling {name} failed ({' '.join(cmd)}):\n{res.stderr}")
    os.replace(tmp, out)
    return out


def compile_with_openmp_fallback(name: str, srcs: list[Path], headers: tuple[Path, ...] = ()) -> tuple[Path, bool]:
    """(library path, whether it uses OpenMP): with -fopenmp, else (compiler without OpenMP) without it."""
    try:
        return compile_library(name, srcs, BASE_FLAGS + OPENMP, headers), True
    except RuntimeError as first:
        try:
            return compile_library(name, srcs, BASE_FLAGS, headers), False
        except RuntimeError:
            raise first from None


def load_library(build_fn, declare) -> tuple[ctypes.CDLL | None, str | None]:
    """(library, None) after `build_fn()` and `declare(lib)`, or (None, reason) when MINRNN_DISABLE_NATIVE is
    set or building/loading fails. Callers cache the pair."""
    if settings.flag("MINRNN_DISABLE_NATIVE"):
        return None, "disabled by MINRNN_DISABLE_NATIVE"
    try:
        lib = ctypes.CDLL(str(build_fn()))
        declare(lib)
        return lib, None
    except (RuntimeError, OSError, AttributeError) as e:
        return None, str(e).strip()


_warned: set[str] = set()


def warn_once(what: str, reason: str, instead: str) -> None:
    """One warning per process and feature when compiled kernels cannot be used: why, and what runs instead."""
    if what in _warned or reason.startswith("disabled by"):
        return
    _warned.add(what)
    first = reason.splitlines()[0] if reason else "unknown reason"
    warnings.warn(f"minrnn: {what} unavailable ({first}); {instead} runs instead", RuntimeWarning, stacklevel=3)
