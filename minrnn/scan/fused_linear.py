"""A whole minGRU/minLSTM layer direction on the CPU in one autograd node: k = x W^T (one matmul, no bias pass)
followed by the fused gate-math + scan kernel of `fused.py`, which adds the bias itself.

Two routes for the matmuls (`kernel_matmul`): on fp32 with AVX2 + FMA they run inside the kernels
(`fused_lin_fwd/bwd` in csrc/fused_body.h, products in csrc/gemm.h), one cache-resident chunk of time steps at a
time: forward computes each chunk's k, scans it and streams it out (saved for backward); backward forms each
chunk's dL/dk and at once dL/dW (per-thread slots, summed here) and dL/dx, so dL/dk never reaches memory. The
kernels decline (and the route below runs) when rows would be split across threads. The other route, described
below, calls torch.mm around the kernels.

Why one node instead of `nn.Linear` + `fused_cell_scan` (torch.mm route): on this kind of CPU a layer step at
B = 64, D = H = 128 spends about as long in memory traffic around the kernels as in the kernels. Owning the
matmul removes it:
- `addmm` first copies the broadcast bias into its fresh (B, T, n_gates * H) output and then accumulates into it;
  here `mm` writes x W^T straight into k and the kernel adds the bias while it reads k anyway;
- the bias gradient is summed inside the backward kernel (per batch row) instead of a separate pass over dL/dk;
- dL/dk never leaves the backward, so it lives in a per-thread workspace reused across steps
  (`native.workspace`): a fresh buffer of >= 32 MiB page-faults on every 4 KiB page and is zeroed by the OS on
  every step; the workspace stays allocated between steps. k is saved but never leaves this node either, so
  it comes from a small per-thread pool (`native.reusable`): a buffer is reused once the node that saved it
  has been freed (never while a graph still holds it). With MINRNN_HUGEPAGES=1 fresh buffers are advised to
  use huge pages (opt-in: not faster at every length).
- dL/dk is written (B*T, n_gates*H) row-major, the layout both backward matmuls (dL/dW = dk^T x, dL/dx = dk W)
  read directly.
Saved for backward: x (the caller's tensor, no copy), W, k and h, as in the unfused route.
"""
from __future__ import annotations

import contextlib
import os

import torch

from . import fused, native

# Where the layer's matmuls run: "auto" = inside the fused kernels (one chunk of time steps at a time, in cache;
# `csrc/gemm.h`) for float32 on a CPU with AVX2 + FMA, else torch.mm around the kernels; "off" = always torch.mm;
# "always" = inside the kernels for float64 too (plain C loops there: slow, for tests). MINRNN_KERNEL_MATMUL sets
# the default.
_MATMUL_MODES = ("auto", "off", "always")
_MATMUL = os.environ.get("MINRNN_KERNEL_MATMUL", "auto")
if _MATMUL not in _MATMUL_MODES:
    raise ValueError(f"MINRNN_KERNEL_MATMUL: expected one of {_MATMUL_MODES}, got {_MATMUL!r}")


@contextlib.contextmanager
def kernel_matmul(mode: str):
    """Temporarily choose where the layer's matmuls run ("auto", "off" or "always"; see above)."""
    global _MATMUL
    if mode not in _MATMUL_MODES:
        raise ValueError(f"kernel_matmul: expected one of {_MATMUL_MODES}, got {mode!r}")
    old, _MATMUL = _MATMUL, mode
    try:
        yield
    finally:
        _MATMUL = old


def kernel_matmul_active(dtype: torch.dtype = torch.float32) -> bool:
    """Whether a layer of this dtype runs its matmuls inside the fused kernels (when its rows are not split)."""
    if _MATMUL == "off" or not native.available():
        return False
    return _MATMUL == "always" or (dtype == torch.float32 and bool(native.library().minrnn_gemm_simd()))


def supported(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether the fused layer route can run: fp32/fp64 CPU tensors of one dtype, fused kernels on, no autocast."""
    return (fused.supported(x) and weight.dtype == x.dtype and weight.device == x.device
            and (bias is None or (bias.dtype == x.dtype and bias.device == x.device))
            and not torch.is_autocast_enabled("cpu"))


def _check(rc: int, what: str) -> bool:
    """True when the kernel ran; False when it declined (rows split across threads: use the torch.mm route)."""
    if rc == 2:
        raise MemoryError(f"{what}: could not allocate the per-thread chunk buffers")
    return rc == 0


class FusedLinearCellFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, h0, h_reset, mask, reset, cell_id: int, normalize: bool, cand_g: bool):
        B, T, D = x.shape
        G = weight.shape[0]
        H = G // (2 if cell_id == 0 else 3)
        x = x.contiguous()
        weight = weight.contiguous()
        k = native.reusable((B, T, G), x)  # pooled: reused once the node that saved it is freed
        bias = None if bias is None else bias.contiguous()
        h0c, hrc, m8, r8 = fused.prepare(h0, h_reset, mask, reset)
        ctx.flags = (cell_id, int(normalize), int(cand_g))
        ctx.in_kernel = False
        h = native.empty_large((B, T, H), x)
        if kernel_matmul_active(x.dtype):  # k = x W^T inside the kernel, chunk by chunk, also written out into k
            p = native._ptr
            fn = getattr(native.library(), f"fused_lin_fwd_{native._SUFFIX[x.dtype]}")
            ctx.in_kernel = _check(fn(*ctx.flags, p(x), p(weight), p(k), p(bias), p(h0c), p(h), p(m8), p(r8), p(hrc),
                                      B, T, H, D, native._threads(h.numel())), "fused_lin_fwd")
        if not ctx.in_kernel:
            torch.mm(x.view(B * T, D), weight.t(), out=k.view(B * T, G))  # (B*T, G), no bias pass
            fused.run_fwd(ctx.flags, k, bias, h0c, hrc, m8, r8, out=h)
        ctx.present = tuple(t is not None for t in (bias, h0c, hrc, m8, r8))
        ctx.save_for_backward(x, weight, k, h, *(fused._opt(t) for t in (bias, h0c, hrc, m8, r8)))
        return h

    @staticmethod
    def backward(ctx, gh):
        x, weight, k, h, *opt = ctx.saved_tensors
        bias, h0, hr, m8, r8 = (t if present else None for t, present in zip(opt, ctx.present))
        need = ctx.needs_input_grad
        B, T, G = k.shape
        if ctx.in_kernel:  # dL/dk stays in the kernel: dL/dW and dL/dx are formed there, chunk by chunk
            D, H, threads = x.shape[2], h.shape[2], native._threads(h.numel())
            ghc, db_rows, dh0, dhr = fused.bwd_outputs(k, h0, hr, gh, bias is not None and need[2], need[3],
                                                        need[4])
            dw_rows = x.new_zeros(threads, G, D) if need[1] else None  # one slot per thread, summed below
            dx = torch.empty_like(x) if need[0] else None
            p = native._ptr
            fn = getattr(native.library(), f"fused_lin_bwd_{native._SUFFIX[x.dtype]}")
            if _check(fn(*ctx.flags, p(x), p(weight), p(k), p(bias), p(h), p(h0), p(ghc), ghc.stride(0),
                         ghc.stride(1), p(dw_rows), p(dx), p(db_rows), p(dh0), p(m8), p(r8), p(hr), p(dhr),
                         B, T, H, D, threads), "fused_lin_bwd"):
                return (dx, None if dw_rows is None else dw_rows.sum(0), None if db_rows is None else db_rows.sum(0),
                        dh0, dhr, None, None, None, None, None)
        # dL/dk never leaves this function (the two matmuls below consume it), so it lives in a reused workspace
        gk, db, dh0, dhr = fused.run_bwd(ctx.flags, k, bias, h, h0, hr, m8, r8, gh, bias is not None and need[2],
                                         need[3], need[4], scratch_gk=True)
        gk2 = gk.view(B * T, G)
        dx = gk2.mm(weight).view(x.shape) if need[0] else None         # (B, T, D)
        dw = gk2.t().mm(x.view(B * T, -1)) if need[1] else None        # (G, D)
        return dx, dw, db, dh0, dhr, None, None, None, None, None


def fused_linear_cell_scan(cell: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                           h0: torch.Tensor | None = None, *, candidate: str = "g", normalize: bool = True,
                           mask: torch.Tensor | None = None, reset: torch.Tensor | None = None,
                           h_reset: torch.Tensor | None = None) -> torch.Tensor:
    """All states (B, T, H) of the layer with gate pre-activations k = x weight^T + bias.

    Equals ``fused_cell_scan(cell, F.linear(x, weight, bias), h0, ...)``; x (B, T, D), weight (n_gates * H, D),
    bias (n_gates * H,) or None. Other arguments as in `fused.fused_cell_scan`.
    """
    for name, t, dim in (("x", x, 3), ("weight", weight, 2)):
        if not isinstance(t, torch.Tensor) or t.dim() != dim:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name}: expected a {dim}-d tensor, got {got}")
    B, T, D = x.shape
    G = weight.shape[0]
    if weight.shape[1] != D or weight.dtype != x.dtype or weight.device != x.device:
        raise ValueError(f"weight: expected {x.dtype} shape (n_gates * H, {D}) on {x.device}, got {weight.dtype} "
                         f"{tuple(weight.shape)} on {weight.device}")
    cell_id, _ = fused.check_args(cell, candidate, B, T, G, x, h0, h_reset, mask, reset, bias)
    return FusedLinearCellFn.apply(x, weight, bias, h0, h_reset, mask, reset, cell_id,
                                   bool(normalize) and cell == "minlstm", candidate == "g")
