"""Fused minGRU/minLSTM recurrence on the CPU: gate math + scan in one compiled pass (`csrc/fused.c`).

`fused_cell_scan(cell, k, h0, ...)` takes a layer's gate pre-activations k (B, T, n_gates * H) (minGRU
k = [k_z, k_h], minLSTM k = [k_f, k_i, k_h]; the same split as `cells.coeffs`) and returns all states
h (B, T, H). Forward writes only h; it never forms the (B, T, H) coefficient tensors a, b or the gate values.
Backward keeps only k, h and h0 and recomputes the gates from k while it runs the reverse scan, so a layer's
training memory is k + h (what any implementation must keep) instead of k + h + a + b + gate temporaries.

Padding masks and state resets (with the layer's restart state h_reset) are handled inside the kernel too.
It is used by `cells.cell_scan` whenever the scan resolves to ``native`` on fp32/fp64 CPU tensors;
`use_fused(False)` turns it off (the generic C scan is used then; benchmarks compare both).
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


def _opt(t: torch.Tensor | None) -> torch.Tensor:
    return t if t is not None else torch.empty(0)


class FusedCellFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, k, h0, h_reset, mask, reset, cell_id: int, n_gates: int, normalize: bool, cand_g: bool):
        B, T, G = k.shape
        H = G // n_gates
        k = k.contiguous()
        h0c = None if h0 is None else h0.contiguous()
        hrc = None if h_reset is None else h_reset.contiguous()
        m8 = None if mask is None else mask.to(torch.uint8).contiguous()  # (B, T), 0 = padding
        r8 = None if reset is None else reset.to(torch.uint8).contiguous()  # (B, T), 1 = restart
        h = k.new_empty(B, T, H)
        p = native._ptr
        fn = getattr(native.library(), f"fused_fwd_{native._SUFFIX[k.dtype]}")
        fn(cell_id, int(normalize), int(cand_g), p(k), p(h0c), p(h), p(m8), p(r8), p(hrc), B, T, H,
           native._threads(h.numel()))
        ctx.flags = (cell_id, int(normalize), int(cand_g))
        ctx.present = tuple(t is not None for t in (h0c, hrc, m8, r8))
        ctx.save_for_backward(k, h, *(_opt(t) for t in (h0c, hrc, m8, r8)))
        return h

    @staticmethod
    def backward(ctx, gh):
        k, h, *opt = ctx.saved_tensors
        h0, hr, m8, r8 = (t if present else None for t, present in zip(opt, ctx.present))
        B, T, H = h.shape
        gh = gh.contiguous()
        gk = torch.empty_like(k)
        dh0 = torch.empty_like(h0) if (h0 is not None and ctx.needs_input_grad[1]) else None
        dhr = torch.empty_like(hr) if (hr is not None and ctx.needs_input_grad[2]) else None
        p = native._ptr
        fn = getattr(native.library(), f"fused_bwd_{native._SUFFIX[k.dtype]}")
        fn(*ctx.flags, p(k), p(h), p(h0), p(gh), p(gk), p(dh0), p(m8), p(r8), p(hr), p(dhr), B, T, H,
           native._threads(h.numel()))
        return gk, dh0, dhr, None, None, None, None, None, None


def fused_cell_scan(cell: str, k: torch.Tensor, h0: torch.Tensor | None = None, *, candidate: str = "g",
                    normalize: bool = True, mask: torch.Tensor | None = None, reset: torch.Tensor | None = None,
                    h_reset: torch.Tensor | None = None) -> torch.Tensor:
    """All states (B, T, H) of minGRU (``cell='mingru'``) or minLSTM (``'minlstm'``) from pre-activations k.

    ``normalize`` applies to minLSTM only (f/(f+i), i/(f+i)); ``candidate`` is 'g' (the paper's) or 'identity'.
    mask (B, T) bool: False = padding, the state is carried (a = 1, b = 0). reset (B, T) bool: the state
    restarts at these steps from h_reset (B, H) (zeros if None); mask wins where both are set.
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
    for name, t in (("h0", h0), ("h_reset", h_reset)):
        if t is not None and (tuple(t.shape) != (B, G // n_gates) or t.dtype != k.dtype or t.device != k.device):
            raise ValueError(f"{name}: expected {k.dtype} shape {(B, G // n_gates)} on {k.device}, got {t.dtype} "
                             f"{tuple(t.shape)} on {t.device}")
    for name, t in (("mask", mask), ("reset", reset)):
        if t is not None and (t.dtype != torch.bool or tuple(t.shape) != (B, T) or t.device != k.device):
            raise ValueError(f"{name}: expected a bool tensor of shape {(B, T)} on {k.device}, got {t.dtype} "
                             f"{tuple(t.shape)} on {t.device}")
    return FusedCellFn.apply(k, h0, h_reset, mask, reset, cell_id, n_gates,
                             bool(normalize) and cell == "minlstm", candidate == "g")
