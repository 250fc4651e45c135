"""The `cpu` backend: the compiled C kernels (`csrc/scan.c`, `csrc/fused.c`) as PyTorch custom operators.

Three forward ops, each with its backward op and a fake (meta) implementation, so that `torch.compile`
(`fullgraph=True`) traces through them and `torch.library.opcheck` tests them:
- ``minrnn::cpu_scan(a, b, h0)`` -> h: the plain recurrence h_t = a_t h_{t-1} + b_t (`linear_scan`).
- ``minrnn::cpu_cell(k, bias, h0, h_reset, mask, reset, ...)`` -> h: minGRU/minLSTM gate math fused with the
  scan, from the gate pre-activations k (B, T, n_gates * H); gates are recomputed from k in backward.
- ``minrnn::cpu_linear_cell(x, weight, bias, ...)`` -> (h, k): a whole layer direction, k = x W^T + bias
  included. With ``matmul='auto'`` on fp32 and AVX2 + FMA the matmuls run inside the kernels, one
  cache-resident chunk of time steps at a time (`csrc/gemm.h`), so dL/dk never reaches memory; otherwise (or
  where rows would be split across threads) `torch.mm` runs around the same kernels. ``'off'`` is always
  torch.mm; ``'always'`` uses the in-kernel route on fp64 too (plain C loops: for tests).
Every output is a fresh tensor: nothing saved for backward can be overwritten by a later call.

Double backward (``create_graph=True``, e.g. a gradient penalty) is not implemented by these kernels: the
backward ops raise, naming the backends that support it (``reference``, ``chunked``, ``logspace``).
Empty inputs (B = 0 or H = 0) return empty outputs without calling C.
"""
from __future__ import annotations

import ctypes
from typing import Optional

import torch
from torch import Tensor

from .. import settings
from . import build

_SRCS = [build.CSRC / "scan.c", build.CSRC / "fused.c"]
_HEADERS = (build.CSRC / "fused_body.h", build.CSRC / "gemm.h")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
CPU_DTYPES = tuple(_SUFFIX)
CELLS = {"mingru": (0, 2), "minlstm": (1, 3)}  # cell -> (kernel id, number of gates)
DOUBLE_BACKWARD = ("double backward (create_graph=True) is not supported by the 'cpu' backend (compiled kernels); "
                   "use scan_impl='reference' or 'chunked' for higher-order gradients")
_state: dict = {}


def _declare(lib) -> None:
    ptr, i64, cint = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    flags3 = [cint] * 3  # cell, normalize, candidate g
    for suf in ("f32", "f64"):
        getattr(lib, f"scan_fwd_{suf}").argtypes = [ptr] * 4 + [i64] * 3 + [cint]
        getattr(lib, f"scan_bwd_{suf}").argtypes = [ptr] * 7 + [i64] * 3 + [cint]
        # fused_fwd(flags, k, bias, h0, h, mask, reset, h_reset, B, T, H, threads)
        getattr(lib, f"fused_fwd_{suf}").argtypes = flags3 + [ptr] * 7 + [i64] * 3 + [cint]
        # fused_bwd(flags, k, bias, h, h0, gh, gh_stride_b, gh_stride_t, gk, dbias_rows, dh0, mask, reset,
        #           h_reset, dh_reset, B, T, H, threads)
        getattr(lib, f"fused_bwd_{suf}").argtypes = flags3 + [ptr] * 5 + [i64] * 2 + [ptr] * 7 + [i64] * 3 + [cint]
        # fused_lin_fwd(flags, x, w, k, bias, h0, h, mask, reset, h_reset, B, T, H, D, threads) -> status
        fn = getattr(lib, f"fused_lin_fwd_{suf}")
        fn.argtypes, fn.restype = flags3 + [ptr] * 9 + [i64] * 4 + [cint], cint
        # fused_lin_bwd(flags, x, w, k, bias, h, h0, gh, gh_stride_b, gh_stride_t, dw, dx, dbias_rows, dh0, mask,
        #               reset, h_reset, dh_reset, B, T, H, D, threads) -> status
        fn = getattr(lib, f"fused_lin_bwd_{suf}")
        fn.argtypes, fn.restype = flags3 + [ptr] * 7 + [i64] * 2 + [ptr] * 8 + [i64] * 4 + [cint], cint
    lib.minrnn_advise_huge.argtypes = [ptr, i64]
    lib.minrnn_gemm_simd.restype = cint
    lib.minrnn_set_lin_chunk.argtypes = [i64]


def _build():
    path, openmp = build.compile_with_openmp_fallback("minrnn_scan", _SRCS, _HEADERS)
    _state["openmp"] = openmp
    return path


def library():
    """The loaded ctypes library, or None (then `unavailable_reason()` says why)."""
    if "lib" not in _state:
        _state["lib"], _state["error"] = build.load_library(_build, _declare)
    return _state["lib"]


def available() -> bool:
    return library() is not None


def unavailable_reason() -> str:
    library()
    return _state.get("error") or ""


def openmp() -> bool:
    """Whether the loaded library was built with OpenMP (else it runs on one thread)."""
    return bool(available() and _state.get("openmp"))


def gemm_simd() -> bool:
    """Whether the in-kernel matmuls have their AVX2 + FMA tile (else plain loops)."""
    return bool(available() and library().minrnn_gemm_simd())


def matmul_in_kernel(mode: str, dtype: torch.dtype) -> bool:
    """Whether a layer with cpu_matmul=`mode` runs its matmuls inside the kernels for `dtype` (unless its rows
    would be split across threads, where the kernels decline and torch.mm runs)."""
    if mode not in settings.MATMUL_MODES:
        raise ValueError(f"cpu_matmul: expected one of {settings.MATMUL_MODES}, got {mode!r}")
    return mode == "always" or (mode == "auto" and dtype == torch.float32 and gemm_simd())


def _p(t: Tensor | None):
    return None if t is None or t.numel() == 0 else ctypes.c_void_p(t.data_ptr())


def _threads(numel: int) -> int:
    # Waking threads costs more than it saves on small problems.
    return torch.get_num_threads() if numel >= 1 << 16 else 1


def _u8(m: Tensor | None) -> Tensor | None:
    return None if m is None else m.to(torch.uint8).contiguous()


def _c(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


def _E(like: Tensor) -> Tensor:
    """A fresh empty tensor: what an op returns for a gradient nobody asked for (outputs may not alias)."""
    return like.new_empty(0)


def _fn(name: str, dtype: torch.dtype):
    lib = library()
    if lib is None:
        raise RuntimeError(f"the 'cpu' backend is unavailable: {unavailable_reason()}")
    return getattr(lib, f"{name}_{_SUFFIX[dtype]}")


def _unit_rows(gh: Tensor) -> Tensor:
    """gh (B, T, H) with unit stride along H (the kernels read B and T through strides); the gradient of
    ``y.sum()`` (all strides 0) stays one row of H values instead of a (B, T, H) copy."""
    g = gh
    for d in (0, 1):
        if g.stride(d) == 0 and g.shape[d] > 1:
            g = g.narrow(d, 0, 1)
    if g.stride(2) != 1 and g.shape[2] > 1:
        g = g.contiguous()
    return g.expand(gh.shape)


def _raise_double_backward(ctx, *grads):
    raise RuntimeError(DOUBLE_BACKWARD)


# ---- minrnn::cpu_scan -------------------------------------------------------------------------------------

@torch.library.custom_op("minrnn::cpu_scan", mutates_args=(), device_types="cpu")
def cpu_scan(a: Tensor, b: Tensor, h0: Optional[Tensor]) -> Tensor:
    B, T, D = a.shape
    a, b, h0 = a.contiguous(), b.contiguous(), _c(h0)
    h = torch.empty_like(a)
    if h.numel():
        _fn("scan_fwd", a.dtype)(_p(a), _p(b), _p(h0), _p(h), B, T, D, _threads(a.numel()))
    return h


@cpu_scan.register_fake
def _(a, b, h0):
    return torch.empty_like(a, memory_format=torch.contiguous_format)


@torch.library.custom_op("minrnn::cpu_scan_bwd", mutates_args=(), device_types="cpu")
def cpu_scan_bwd(a: Tensor, h: Tensor, h0: Optional[Tensor], gh: Tensor, need_a: bool,
                 need_h0: bool) -> tuple[Tensor, Tensor, Tensor]:
    B, T, D = a.shape
    a, h, h0, gh = a.contiguous(), h.contiguous(), _c(h0), gh.contiguous()
    da = torch.empty_like(a) if need_a else a.new_empty(0)
    db = torch.empty_like(a)
    dh0 = torch.empty_like(h0) if (h0 is not None and need_h0) else a.new_empty(0)
    if a.numel():
        _fn("scan_bwd", a.dtype)(_p(a), _p(h), _p(h0), _p(gh), _p(da), _p(db), _p(dh0), B, T, D,
                                 _threads(a.numel()))
    return da, db, dh0


@cpu_scan_bwd.register_fake
def _(a, h, h0, gh, need_a, need_h0):
    return (torch.empty_like(a) if need_a else _E(a), torch.empty_like(a),
            torch.empty_like(h0) if (h0 is not None and need_h0) else _E(a))


def _scan_setup(ctx, inputs, output):
    a, b, h0 = inputs
    ctx.has_h0 = h0 is not None
    ctx.save_for_backward(a, output, h0 if h0 is not None else a.new_empty(0))


def _scan_backward(ctx, gh):
    a, h, h0 = ctx.saved_tensors
    h0 = h0 if ctx.has_h0 else None
    da, db, dh0 = cpu_scan_bwd(a, h, h0, gh, ctx.needs_input_grad[0], ctx.has_h0 and ctx.needs_input_grad[2])
    return (da if ctx.needs_input_grad[0] else None, db if ctx.needs_input_grad[1] else None,
            dh0 if ctx.has_h0 and ctx.needs_input_grad[2] else None)


torch.library.register_autograd("minrnn::cpu_scan", _scan_backward, setup_context=_scan_setup)
torch.library.register_autograd("minrnn::cpu_scan_bwd", _raise_double_backward)


# ---- minrnn::cpu_cell (gate math + scan from k) -----------------------------------------------------------

@torch.library.custom_op("minrnn::cpu_cell", mutates_args=(), device_types="cpu")
def cpu_cell(k: Tensor, bias: Optional[Tensor], h0: Optional[Tensor], h_reset: Optional[Tensor],
             mask: Optional[Tensor], reset: Optional[Tensor], cell_id: int, normalize: bool, cand_g: bool) -> Tensor:
    B, T, G = k.shape
    H = G // (2 if cell_id == 0 else 3)
    h = k.new_empty(B, T, H)
    if h.numel():
        # every temporary is bound to a name: a tensor freed before the C call would hand it a dangling pointer
        k, bias, h0, hr, m8, r8 = k.contiguous(), _c(bias), _c(h0), _c(h_reset), _u8(mask), _u8(reset)
        _fn("fused_fwd", k.dtype)(cell_id, int(normalize), int(cand_g), _p(k), _p(bias), _p(h0), _p(h),
                                  _p(m8), _p(r8), _p(hr), B, T, H, _threads(h.numel()))
    return h


@cpu_cell.register_fake
def _(k, bias, h0, h_reset, mask, reset, cell_id, normalize, cand_g):
    B, T, G = k.shape
    return k.new_empty(B, T, G // (2 if cell_id == 0 else 3))


@torch.library.custom_op("minrnn::cpu_cell_bwd", mutates_args=(), device_types="cpu")
def cpu_cell_bwd(k: Tensor, bias: Optional[Tensor], h: Tensor, h0: Optional[Tensor], h_reset: Optional[Tensor],
                 mask: Optional[Tensor], reset: Optional[Tensor], gh: Tensor, cell_id: int, normalize: bool,
                 cand_g: bool, need_bias: bool, need_h0: bool,
                 need_hr: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    B, T, G = k.shape
    H = h.shape[2]
    gk = torch.empty_like(k, memory_format=torch.contiguous_format)
    db_rows = k.new_zeros(B, G) if need_bias and bias is not None else k.new_empty(0)
    dh0 = torch.empty_like(h0) if need_h0 and h0 is not None else k.new_empty(0)
    dhr = torch.empty_like(h_reset) if need_hr and h_reset is not None else k.new_empty(0)
    if h.numel():
        k, bias, h, h0, hr = k.contiguous(), _c(bias), h.contiguous(), _c(h0), _c(h_reset)
        g, m8, r8 = _unit_rows(gh), _u8(mask), _u8(reset)
        _fn("fused_bwd", k.dtype)(cell_id, int(normalize), int(cand_g), _p(k), _p(bias), _p(h), _p(h0), _p(g),
                                  g.stride(0), g.stride(1), _p(gk), _p(db_rows), _p(dh0), _p(m8), _p(r8), _p(hr),
                                  _p(dhr), B, T, H, _threads(h.numel()))
    else:
        gk.zero_()
        dh0.zero_()
        dhr.zero_()
    return gk, db_rows.sum(0) if need_bias and bias is not None else db_rows, dh0, dhr


@cpu_cell_bwd.register_fake
def _(k, bias, h, h0, h_reset, mask, reset, gh, cell_id, normalize, cand_g, need_bias, need_h0, need_hr):
    return (torch.empty_like(k, memory_format=torch.contiguous_format),
            k.new_empty(k.shape[2]) if need_bias and bias is not None else _E(k),
            torch.empty_like(h0) if need_h0 and h0 is not None else _E(k),
            torch.empty_like(h_reset) if need_hr and h_reset is not None else _E(k))


def _cell_setup(ctx, inputs, output):
    k, bias, h0, hr, mask, reset, cell_id, normalize, cand_g = inputs
    ctx.flags = (cell_id, normalize, cand_g)
    ctx.present = tuple(t is not None for t in (bias, h0, hr, mask, reset))
    ctx.save_for_backward(k, output, *(t if t is not None else k.new_empty(0) for t in (bias, h0, hr, mask, reset)))


def _opt(ctx, saved):
    return [t if present else None for t, present in zip(saved, ctx.present)]


def _cell_backward(ctx, gh):
    k, h, *rest = ctx.saved_tensors
    bias, h0, hr, mask, reset = _opt(ctx, rest)
    need = ctx.needs_input_grad
    gk, db, dh0, dhr = cpu_cell_bwd(k, bias, h, h0, hr, mask, reset, gh, *ctx.flags, need[1], need[2], need[3])
    return (gk, db if bias is not None and need[1] else None, dh0 if h0 is not None and need[2] else None,
            dhr if hr is not None and need[3] else None, None, None, None, None, None)


torch.library.register_autograd("minrnn::cpu_cell", _cell_backward, setup_context=_cell_setup)
torch.library.register_autograd("minrnn::cpu_cell_bwd", _raise_double_backward)


# ---- minrnn::cpu_linear_cell (a whole layer direction: k = x W^T + bias, gate math, scan) -----------------

def _status(rc: int, what: str) -> bool:
    """True when the kernel ran; False when it declined (rows split across threads: torch.mm runs instead)."""
    if rc == 2:
        raise MemoryError(f"{what}: could not allocate the per-thread chunk buffers")
    return rc == 0


@torch.library.custom_op("minrnn::cpu_linear_cell", mutates_args=(), device_types="cpu")
def cpu_linear_cell(x: Tensor, weight: Tensor, bias: Optional[Tensor], h0: Optional[Tensor],
                    h_reset: Optional[Tensor], mask: Optional[Tensor], reset: Optional[Tensor], cell_id: int,
                    normalize: bool, cand_g: bool, matmul: str) -> tuple[Tensor, Tensor]:
    B, T, D = x.shape
    G = weight.shape[0]
    H = G // (2 if cell_id == 0 else 3)
    k, h = x.new_empty(B, T, G), x.new_empty(B, T, H)
    if not h.numel():
        return h, k
    x, weight, bias, h0, hr = x.contiguous(), weight.contiguous(), _c(bias), _c(h0), _c(h_reset)
    m8, r8 = _u8(mask), _u8(reset)
    flags = (cell_id, int(normalize), int(cand_g))
    if matmul_in_kernel(matmul, x.dtype) and _status(_fn("fused_lin_fwd", x.dtype)(
            *flags, _p(x), _p(weight), _p(k), _p(bias), _p(h0), _p(h), _p(m8), _p(r8), _p(hr), B, T, H, D,
            _threads(h.numel())), "fused_lin_fwd"):
        return h, k
    torch.mm(x.view(B * T, D), weight.t(), out=k.view(B * T, G))  # no bias pass: the kernel adds it
    _fn("fused_fwd", x.dtype)(*flags, _p(k), _p(bias), _p(h0), _p(h), _p(m8), _p(r8), _p(hr), B, T, H,
                              _threads(h.numel()))
    return h, k


@cpu_linear_cell.register_fake
def _(x, weight, bias, h0, h_reset, mask, reset, cell_id, normalize, cand_g, matmul):
    B, T, _ = x.shape
    G = weight.shape[0]
    return x.new_empty(B, T, G // (2 if cell_id == 0 else 3)), x.new_empty(B, T, G)


@torch.library.custom_op("minrnn::cpu_linear_cell_bwd", mutates_args=(), device_types="cpu")
def cpu_linear_cell_bwd(x: Tensor, weight: Tensor, k: Tensor, bias: Optional[Tensor], h: Tensor,
                        h0: Optional[Tensor], h_reset: Optional[Tensor], mask: Optional[Tensor],
                        reset: Optional[Tensor], gh: Tensor, cell_id: int, normalize: bool, cand_g: bool,
                        matmul: str, need_x: bool, need_w: bool, need_bias: bool, need_h0: bool,
                        need_hr: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    B, T, D = x.shape
    G, H = k.shape[2], h.shape[2]
    need_bias, need_h0, need_hr = need_bias and bias is not None, need_h0 and h0 is not None, need_hr and h_reset is not None
    if not h.numel():  # nothing flows back from an empty output
        return (torch.zeros_like(x) if need_x else _E(x), torch.zeros_like(weight) if need_w else _E(x),
                torch.zeros_like(bias) if need_bias else _E(x), torch.zeros_like(h0) if need_h0 else _E(x),
                torch.zeros_like(h_reset) if need_hr else _E(x))
    x, weight, k, bias, h, h0, hr = (_c(t) for t in (x, weight, k, bias, h, h0, h_reset))
    m8, r8, g = _u8(mask), _u8(reset), _unit_rows(gh)
    flags = (cell_id, int(normalize), int(cand_g))
    threads = _threads(h.numel())
    db_rows = x.new_zeros(B, G) if need_bias else None
    dh0 = torch.empty_like(h0) if need_h0 else _E(x)
    dhr = torch.empty_like(hr) if need_hr else _E(x)
    if matmul_in_kernel(matmul, x.dtype):  # dL/dk stays in the kernel: dL/dW and dL/dx are formed there
        dw_rows = x.new_zeros(threads, G, D) if need_w else None  # one slot per thread, summed below
        dx = torch.empty_like(x) if need_x else _E(x)
        if _status(_fn("fused_lin_bwd", x.dtype)(
                *flags, _p(x), _p(weight), _p(k), _p(bias), _p(h), _p(h0), _p(g), g.stride(0), g.stride(1),
                _p(dw_rows), _p(dx), _p(db_rows), _p(dh0), _p(m8), _p(r8), _p(hr), _p(dhr), B, T, H, D, threads),
                "fused_lin_bwd"):
            return (dx, dw_rows.sum(0) if need_w else _E(x), db_rows.sum(0) if need_bias else _E(x), dh0, dhr)
    gk = x.new_empty(B, T, G)
    _fn("fused_bwd", x.dtype)(*flags, _p(k), _p(bias), _p(h), _p(h0), _p(g), g.stride(0), g.stride(1), _p(gk),
                              _p(db_rows), _p(dh0), _p(m8), _p(r8), _p(hr), _p(dhr), B, T, H, threads)
    gk2 = gk.view(B * T, G)
    return (gk2.mm(weight).view(B, T, D) if need_x else _E(x), gk2.t().mm(x.view(B * T, D)) if need_w else _E(x),
            db_rows.sum(0) if need_bias else _E(x), dh0, dhr)


@cpu_linear_cell_bwd.register_fake
def _(x, weight, k, bias, h, h0, h_reset, mask, reset, gh, cell_id, normalize, cand_g, matmul, need_x, need_w,
      need_bias, need_h0, need_hr):
    return (torch.empty_like(x, memory_format=torch.contiguous_format) if need_x else _E(x),
            torch.empty_like(weight, memory_format=torch.contiguous_format) if need_w else _E(x),
            torch.empty_like(bias) if need_bias and bias is not None else _E(x),
            torch.empty_like(h0) if need_h0 and h0 is not None else _E(x),
            torch.empty_like(h_reset) if need_hr and h_reset is not None else _E(x))


def _linear_setup(ctx, inputs, output):
    x, weight, bias, h0, hr, mask, reset, cell_id, normalize, cand_g, matmul = inputs
    h, k = output
    ctx.flags = (cell_id, normalize, cand_g, matmul)
    ctx.present = tuple(t is not None for t in (bias, h0, hr, mask, reset))
    ctx.mark_non_differentiable(k)
    ctx.set_materialize_grads(False)  # k gets no gradient: no (B, T, G) zero tensor is made for it
    ctx.save_for_backward(x, weight, k, h, *(t if t is not None else x.new_empty(0)
                                            for t in (bias, h0, hr, mask, reset)))


def _linear_backward(ctx, gh, _gk):
    x, weight, k, h, *rest = ctx.saved_tensors
    if gh is None:  # h unused by the loss: nothing flows back
        return (None,) * 11
    bias, h0, hr, mask, reset = _opt(ctx, rest)
    n = ctx.needs_input_grad
    dx, dw, db, dh0, dhr = cpu_linear_cell_bwd(x, weight, k, bias, h, h0, hr, mask, reset, gh, *ctx.flags,
                                               n[0], n[1], n[2], n[3], n[4])
    return (dx if n[0] else None, dw if n[1] else None, db if bias is not None and n[2] else None,
            dh0 if h0 is not None and n[3] else None, dhr if hr is not None and n[4] else None,
            None, None, None, None, None, None)


torch.library.register_autograd("minrnn::cpu_linear_cell", _linear_backward, setup_context=_linear_setup)
torch.library.register_autograd("minrnn::cpu_linear_cell_bwd", _raise_double_backward)


# ---- checked entry points (the layers validate at their own entry and call the ops directly) ---------------

def check_args(cell: str, candidate: str, B: int, T: int, G: int, ref: Tensor, h0, h_reset, mask, reset,
               bias) -> tuple[int, int]:
    """Validate the arguments of the fused entry points; returns (kernel cell id, number of gates)."""
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {tuple(CELLS)}, got {cell!r}")
    if candidate not in ("g", "identity"):
        raise ValueError(f"candidate: expected 'g' or 'identity', got {candidate!r}")
    cell_id, n_gates = CELLS[cell]
    if T == 0 or G % n_gates:
        raise ValueError(f"expected T >= 1 and n_gates * H gate pre-activations (a last dim divisible by "
                         f"{n_gates}, {cell}), got T = {T}, {G}")
    if ref.device.type != "cpu" or ref.dtype not in _SUFFIX:
        raise TypeError(f"expected float32/float64 CPU tensors, got {ref.dtype} on {ref.device}")
    if not available():
        raise RuntimeError(f"the 'cpu' backend is unavailable: {unavailable_reason()}")
    for name, t, shape in (("h0", h0, (B, G // n_gates)), ("h_reset", h_reset, (B, G // n_gates)),
                           ("bias", bias, (G,))):
        if t is not None and (tuple(t.shape) != shape or t.dtype != ref.dtype or t.device != ref.device):
            raise ValueError(f"{name}: expected {ref.dtype} shape {shape} on {ref.device}, got {t.dtype} "
                             f"{tuple(t.shape)} on {t.device}")
    for name, t in (("mask", mask), ("reset", reset)):
        if t is not None and (t.dtype != torch.bool or tuple(t.shape) != (B, T) or t.device != ref.device):
            raise ValueError(f"{name}: expected a bool tensor of shape {(B, T)} on {ref.device}, got {t.dtype} "
                             f"{tuple(t.shape)} on {t.device}")
    return cell_id, n_gates


def fused_cell_scan(cell: str, k: Tensor, h0: Tensor | None = None, *, candidate: str = "g", normalize: bool = True,
                    mask: Tensor | None = None, reset: Tensor | None = None, h_reset: Tensor | None = None,
                    bias: Tensor | None = None) -> Tensor:
    """All states (B, T, H) of minGRU/minLSTM from pre-activations k (B, T, n_gates * H), checked, on the C kernel.

    ``normalize`` applies to minLSTM only; mask (B, T) bool: False = padding (state carried); reset (B, T) bool:
    restart from h_reset (zeros if None), the mask winning where both are set; bias (n_gates * H,) is added to
    k inside the kernel."""
    if not isinstance(k, Tensor) or k.dim() != 3:
        got = tuple(k.shape) if isinstance(k, Tensor) else type(k).__name__
        raise ValueError(f"k: expected a tensor of shape (B, T, n_gates * H), got {got}")
    B, T, G = k.shape
    cell_id, _ = check_args(cell, candidate, B, T, G, k, h0, h_reset, mask, reset, bias)
    return cpu_cell(k, bias, h0, h_reset, mask, reset, cell_id, bool(normalize) and cell == "minlstm",
                    candidate == "g")


def fused_linear_cell_scan(cell: str, x: Tensor, weight: Tensor, bias: Tensor | None = None,
                           h0: Tensor | None = None, *, candidate: str = "g", normalize: bool = True,
                           mask: Tensor | None = None, reset: Tensor | None = None, h_reset: Tensor | None = None,
                           matmul: str = "auto") -> Tensor:
    """`fused_cell_scan` of k = x weight^T + bias, checked (x (B, T, D), weight (n_gates * H, D))."""
    for name, t, dim in (("x", x, 3), ("weight", weight, 2)):
        if not isinstance(t, Tensor) or t.dim() != dim:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name}: expected a {dim}-d tensor, got {got}")
    B, T, D = x.shape
    G = weight.shape[0]
    if weight.shape[1] != D or weight.dtype != x.dtype or weight.device != x.device:
        raise ValueError(f"weight: expected {x.dtype} shape (n_gates * H, {D}) on {x.device}, got {weight.dtype} "
                         f"{tuple(weight.shape)} on {weight.device}")
    matmul_in_kernel(matmul, x.dtype)  # validates the mode
    cell_id, _ = check_args(cell, candidate, B, T, G, x, h0, h_reset, mask, reset, bias)
    return cpu_linear_cell(x, weight, bias, h0, h_reset, mask, reset, cell_id, bool(normalize) and cell == "minlstm",
                           candidate == "g", matmul)[0]
