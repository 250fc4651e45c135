"""Fused minGRU/minLSTM recurrence on the CPU: gate math + scan in one compiled pass (`csrc/fused.c`).

`fused_cell_scan(cell, k, h0, ...)` takes a layer's gate pre-activations k (B, T, n_gates * H) (minGRU
k = [k_z, k_h], minLSTM k = [k_f, k_i, k_h]; the same split as `cells.coeffs`) and returns all states
h (B, T, H). Forward writes only h; it never forms the (B, T, H) coefficient tensors a, b or the gate values.
Backward keeps only k, h and h0 and recomputes the gates from k while it runs the reverse scan, so a layer's
training memory is k + h (what any implementation must keep) instead of k + h + a + b + gate temporaries.

It is used by `cells.cell_scan` when the scan resolves to ``native`` on contiguous-able fp32/fp64 CPU tensors
without mask/reset (those take the generic route); `use_fused(False)` turns it off (benchmarks compare both).
"""
from __future__ import annotations

import contextlib

import torch

from . import native

_ENABLED = True
_CELLS = {"mingru": (0, 2), "minlstm": (1, 3)}  # cell -> (kernel id, number of gates)


@contextlib.contextmanager
def use_fused(enabled: bool):
    """Temporarily turn the fused kernels on or off (the generic native scan is used when off)."""
    global _ENABLED
    old, _ENABLED = _ENABLED, bool(enabled)
    try:
        yield
    finally:
        _ENABLED = old


def enabled() -> bool:
    return _ENABLED


def supported(k: torch.Tensor) -> bool:
    """Whether the fused kernel can run on k (CPU fp32/fp64 and the compiled library present)."""
    return (_ENABLED and k.device.type == "cpu" and k.dtype in (torch.float32, torch.float64)
            and native.available())


class FusedCellFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, k, h0, cell_id: int, n_gates: int, normalize: bool, cand_g: bool):
        B, T, G = k.shape
        H = G // n_gates
        k = k.contiguous()
        h0c = None if h0 is None else h0.contiguous()
        h = k.new_empty(B, T, H)
        lib = native.library()
        fn = getattr(lib, f"fused_fwd_{native._SUFFIX[k.dtype]}")
        fn(cell_id, int(normalize), int(cand_g), native._ptr(k), native._ptr(h0c), native._ptr(h), B, T, H,
           native._threads(h.numel()))
        ctx.flags = (cell_id, int(normalize), int(cand_g))
        ctx.has_h0 = h0 is not None
        ctx.save_for_backward(k, h, h0c if h0c is not None else k.new_empty(0))
        return h

    @staticmethod
    def backward(ctx, gh):
        k, h, h0 = ctx.saved_tensors
        h0 = h0 if ctx.has_h0 else None
        B, T, H = h.shape
        gh = gh.contiguous()
        gk = torch.empty_like(k)
        dh0 = torch.empty_like(h0) if (h0 is not None and ctx.needs_input_grad[1]) else None
        fn = getattr(native.library(), f"fused_bwd_{native._SUFFIX[k.dtype]}")
        fn(*ctx.flags, native._ptr(k), native._ptr(h), native._ptr(h0), native._ptr(gh), native._ptr(gk),
           native._ptr(dh0), B, T, H, native._threads(h.numel()))
        return gk, dh0, None, None, None, None


def fused_cell_scan(cell: str, k: torch.Tensor, h0: torch.Tensor | None = None, *, candidate: str = "g",
                    normalize: bool = True) -> torch.Tensor:
    """All states (B, T, H) of minGRU (``cell='mingru'``) or minLSTM (``'minlstm'``) from pre-activations k.

    ``normalize`` applies to minLSTM only (f/(f+i), i/(f+i)); ``candidate`` is 'g' (the paper's) or 'identity'.
    """
    if cell not in _CELLS:
        raise ValueError(f"cell: expected one of {tuple(_CELLS)}, got {cell!r}")
    if candidate not in ("g", "identity"):
        raise ValueError(f"candidate: expected 'g' or 'identity', got {candidate!r}")
    if not isinstance(k, torch.Tensor) or k.dim() != 3:
        got = tuple(k.shape) if isinstance(k, torch.Tensor) else type(k).__name__
        raise ValueError(f"k: expected a tensor of shape (B, T, n_gates * H), got {got}")
    cell_id, n_gates = _CELLS[cell]
    B, T, G = k.shape
    if T == 0 or G == 0 or G % n_gates:
        raise ValueError(f"k: expected T >= 1 and a last dim divisible by {n_gates} ({cell}), got {tuple(k.shape)}")
    if k.device.type != "cpu" or k.dtype not in native._SUFFIX:
        raise TypeError(f"k: expected a float32/float64 CPU tensor, got {k.dtype} on {k.device}")
    if not native.available():
        raise RuntimeError(f"fused kernels unavailable: {native.unavailable_reason()}")
    if h0 is not None and (tuple(h0.shape) != (B, G // n_gates) or h0.dtype != k.dtype or h0.device != k.device):
        raise ValueError(f"h0: expected {k.dtype} shape {(B, G // n_gates)} on {k.device}, got {h0.dtype} "
                         f"{tuple(h0.shape)} on {h0.device}")
    return FusedCellFn.apply(k, h0, cell_id, n_gates, bool(normalize) and cell == "minlstm", candidate == "g")
