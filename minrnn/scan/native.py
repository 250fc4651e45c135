"""Compiled CPU kernels: `csrc/scan.c` (the generic scan) and `csrc/fused.c` (minGRU/minLSTM gate math fused
with the scan, used by `fused.py`), built with the system C compiler on first use and loaded with ctypes.

No PyTorch headers are involved, so the build takes a few seconds, once. The shared library is cached under
``$MINRNN_CACHE`` (default ``~/.cache/minrnn``) keyed by a hash of the source and flags, and is written
atomically (temp file, then rename). Where no compiler is found the `native` implementation is simply not
available and ``auto`` uses the pure-PyTorch ``chunked`` scan; ``minrnn info`` says which is active.
Supports contiguous CPU float32/float64; other dtypes are computed in float32 and cast back.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

_CSRC = Path(__file__).resolve().parent.parent / "csrc"
_SRCS = [_CSRC / "scan.c", _CSRC / "fused.c"]
_HEADERS = [_CSRC / "fused_body.h", _CSRC / "gemm.h"]
# -fno-trapping-math lets gcc if-convert (and so vectorise) the branchy gate math; results are unchanged.
_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC"]
_lib = None
_error: str | None = None


def _cache_dir() -> Path:
    return Path(os.environ.get("MINRNN_CACHE", Path.home() / ".cache" / "minrnn"))


def compile_library(name: str, srcs: list[Path], flags: list[str], headers: tuple[Path, ...] = (),
                    libs: tuple[str, ...] = ()) -> Path:
    """Compile `srcs` into a shared library cached under `_cache_dir()` as ``{name}_{hash}.so``, the hash
    covering sources, headers, compiler and flags; written atomically (temp file, then rename). Returns its path;
    raises RuntimeError when no compiler is found or compilation fails (with the compiler's message)."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler found (install gcc or set CC)")
    if shutil.which(cc) is None:
        raise RuntimeError(f"C compiler: expected an executable, got CC={cc!r}")
    src = b"".join(p.read_bytes() for p in [*srcs, *headers])
    key = hashlib.sha256(src + " ".join([cc, *flags, *libs]).encode()).hexdigest()[:16]
    out = _cache_dir() / f"{name}_{key}.so"
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


def build(verbose: bool = False) -> Path:
    """Compile the scan kernels if needed and return the path of the shared library."""
    return compile_library("minrnn_scan", _SRCS, _FLAGS, tuple(_HEADERS))


def load_library(build_fn, declare) -> tuple[ctypes.CDLL | None, str | None]:
    """(library, None) after building with `build_fn()` and declaring its signatures with `declare(lib)`, or
    (None, reason) when MINRNN_DISABLE_NATIVE is set or building/loading fails. Callers cache the pair."""
    if os.environ.get("MINRNN_DISABLE_NATIVE"):
        return None, "disabled by MINRNN_DISABLE_NATIVE"
    try:
        lib = ctypes.CDLL(str(build_fn()))
        declare(lib)
        return lib, None
    except (RuntimeError, OSError) as e:
        return None, str(e)


def _declare(lib) -> None:
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    flags3 = [ctypes.c_int] * 3  # cell, normalize, candidate g
    for suf in ("f32", "f64"):
        getattr(lib, f"scan_fwd_{suf}").argtypes = [ptr] * 4 + [i64] * 3 + [ctypes.c_int]
        getattr(lib, f"scan_bwd_{suf}").argtypes = [ptr] * 7 + [i64] * 3 + [ctypes.c_int]
        # fused_fwd(flags, k, bias, h0, h, mask, reset, h_reset, B, T, H, threads)
        getattr(lib, f"fused_fwd_{suf}").argtypes = flags3 + [ptr] * 7 + [i64] * 3 + [ctypes.c_int]
        # fused_bwd(flags, k, bias, h, h0, gh, gh_stride_b, gh_stride_t, gk, dbias_rows, dh0, mask, reset,
        #           h_reset, dh_reset, B, T, H, threads)
        getattr(lib, f"fused_bwd_{suf}").argtypes = (flags3 + [ptr] * 5 + [i64] * 2 + [ptr] * 7 + [i64] * 3
                                                     + [ctypes.c_int])
        # fused_lin_fwd(flags, x, w, k, bias, h0, h, mask, reset, h_reset, B, T, H, D, threads) -> status
        fn = getattr(lib, f"fused_lin_fwd_{suf}")
        fn.argtypes, fn.restype = flags3 + [ptr] * 9 + [i64] * 4 + [ctypes.c_int], ctypes.c_int
        # fused_lin_bwd(flags, x, w, k, bias, h, h0, gh, gh_stride_b, gh_stride_t, dw, dx, dbias_rows, dh0, mask,
        #               reset, h_reset, dh_reset, B, T, H, D, threads) -> status
        fn = getattr(lib, f"fused_lin_bwd_{suf}")
        fn.argtypes = flags3 + [ptr] * 7 + [i64] * 2 + [ptr] * 8 + [i64] * 4 + [ctypes.c_int]
        fn.restype = ctypes.c_int
    lib.minrnn_advise_huge.argtypes = [ptr, i64]
    lib.minrnn_gemm_simd.restype = ctypes.c_int
    lib.minrnn_set_lin_chunk.argtypes = [i64]


def _load():
    global _lib, _error
    if _lib is None and _error is None:
        _lib, _error = load_library(build, _declare)
    return _lib


def available() -> bool:
    return _load() is not None


def library():
    """The loaded ctypes library (None if unavailable); used by `fused.py`."""
    return _load()


def unavailable_reason() -> str:
    _load()
    return _error or ""


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _ptr(t: torch.Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


# Fresh buffers this large come from a new mmap (glibc's largest mmap threshold is 32 MiB), so every 4 KiB page
# faults on first touch. MINRNN_HUGEPAGES=1 makes `empty_large` ask for transparent huge pages there (opt-in:
# measured on a 2-core VM it cut a layer step's faults 15-100x and its time by ~15% at T = 512, but direct
# compaction of huge pages made T >= 1024 up to 1.3x slower; see docs/benchmarks.md).
HUGE_MIN_BYTES = 32 << 20
HUGEPAGES = os.environ.get("MINRNN_HUGEPAGES", "0") == "1"


def empty_large(shape, like: torch.Tensor) -> torch.Tensor:
    """torch.empty(shape) like `like`; with HUGEPAGES, a CPU buffer of >= HUGE_MIN_BYTES is advised to use huge
    pages."""
    t = like.new_empty(shape)
    nbytes = t.numel() * t.element_size()
    if HUGEPAGES and nbytes >= HUGE_MIN_BYTES and t.device.type == "cpu" and _load() is not None:
        _lib.minrnn_advise_huge(t.data_ptr(), nbytes)
    return t


_scratch = threading.local()


def workspace(shape, like: torch.Tensor) -> torch.Tensor:
    """A scratch tensor of `shape` (contents undefined) reused by later calls on this thread.

    Only for buffers that never leave their caller (the fused layer's dL/dk, consumed by its own two matmuls):
    a fresh buffer of that size costs page faults and zeroing on every step. The largest size asked for stays
    allocated until `free_workspace()` or the thread's end."""
    n = 1
    for d in shape:
        n *= int(d)
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
        _scratch.buf = None  # free the old buffer before allocating the new one
        buf = _scratch.buf = empty_large((max(n, 1),), like)
    return buf[:n].view(shape)


POOL_MAX = 4  # saved-tensor buffers kept per thread for reuse (least recently used dropped first)


def reusable(shape, like: torch.Tensor) -> torch.Tensor:
    """A buffer for a tensor that is saved for backward but never leaves its autograd node (the fused layer's k).

    Reuses a buffer of the same size from this thread's pool when nothing but the pool references it any more
    (the node that saved it ran backward and was freed; with retain_graph or a pending backward it is still
    referenced and is left alone); else allocates one and pools it. A fresh buffer >= 32 MiB costs page faults
    and OS zeroing on every step. Pooled buffers stay allocated between steps (`free_workspace()` releases them).
    """
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    n = 1
    for d in shape:
        n *= int(d)
    if use_count is None or POOL_MAX < 1:
        return empty_large(shape, like)
    pool = getattr(_scratch, "pool", None)
    if pool is None:
        pool = _scratch.pool = []
    for i, buf in enumerate(pool):
        # 2 references when free: the pooled tensor and the temporary storage object of this check
        if buf.numel() == n and buf.dtype == like.dtype and buf.device == like.device \
                and use_count(buf.untyped_storage()._cdata) == 2:
            pool.append(pool.pop(i))
            return buf.view(shape)
    buf = empty_large((n,), like)
    pool.append(buf)
    if len(pool) > POOL_MAX:
        pool.pop(0)
    return buf.view(shape)


def free_workspace() -> int:
    """Release this thread's scratch buffer and pooled buffers; returns the bytes they held."""
    bufs = [getattr(_scratch, "buf", None)] + list(getattr(_scratch, "pool", None) or [])
    _scratch.buf, _scratch.pool = None, []
    return sum(b.numel() * b.element_size() for b in bufs if b is not None)


def _threads(numel: int) -> int:
    # Waking threads costs more than it saves on small problems.
    return torch.get_num_threads() if numel >= 1 << 16 else 1


class NativeScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, h0):
        B, T, D = a.shape
        a, b = a.contiguous(), b.contiguous()
        h0c = None if h0 is None else h0.contiguous()
        h = torch.empty_like(a)
        getattr(_lib, f"scan_fwd_{_SUFFIX[a.dtype]}")(_ptr(a), _ptr(b), _ptr(h0c), _ptr(h), B, T, D,
                                                       _threads(a.numel()))
        ctx.has_h0 = h0 is not None
        ctx.save_for_backward(a, h, h0c if h0c is not None else torch.empty(0))
        return h

    @staticmethod
    def backward(ctx, gh):
        a, h, h0 = ctx.saved_tensors
        h0 = h0 if ctx.has_h0 else None
        B, T, D = a.shape
        gh = gh.contiguous()
        need_a, need_b, need_h0 = ctx.needs_input_grad
        da = torch.empty_like(a) if need_a else None
        db = torch.empty_like(a) if need_b else None
        dh0 = torch.empty_like(h0) if (h0 is not None and need_h0) else None
        getattr(_lib, f"scan_bwd_{_SUFFIX[a.dtype]}")(_ptr(a), _ptr(h), _ptr(h0), _ptr(gh), _ptr(da), _ptr(db),
                                                       _ptr(dh0), B, T, D, _threads(a.numel()))
        return da, db, dh0


def scan_native(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    if _load() is None:
        raise RuntimeError(f"native scan unavailable: {_error}")
    if a.device.type != "cpu":
        raise ValueError(f"native scan: expected CPU tensors, got device {a.device}")
    if a.dtype in _SUFFIX:
        return NativeScanFn.apply(a, b, h0)
    # bf16/fp16: accumulate in fp32, return the input dtype.
    h = NativeScanFn.apply(a.float(), b.float(), None if h0 is None else h0.float())
    return h.to(a.dtype)
