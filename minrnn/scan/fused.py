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


def unit_stride_rows(gh: torch.Tensor) -> torch.Tensor:
    """gh (B, T, H) with unit stride along H and any strides along B and T, copying as little as possible.

    The gradient of ``y.sum()`` is one expanded scalar (all strides 0); it becomes one row of H values expanded
    back (strides 0, 0, 1) instead of a (B, T, H) copy. Other layouts with unit stride along H are used as is."""
    g = gh
    for d in (0, 1):
        if g.stride(d) == 0 and g.shape[d] > 1:
            g = g.narrow(d, 0, 1)
    if g.stride(2) != 1 and g.shape[2] > 1:
        g = g.contiguous()
    return g.expand(gh.shape)


def run_fwd(flags, k, bias, h0, hr, m8, r8, out: torch.Tensor | None = None) -> torch.Tensor:
    """The forward kernel on contiguous k (B, T, G) (bias (G,), h0/hr (B, H), m8/r8 (B, T) uint8, or None), into
    `out` (contiguous (B, T, H)) or a fresh tensor."""
    B, T, G = k.shape
    H = G // (2 if flags[0] == 0 else 3)
    h = native.empty_large((B, T, H), k) if out is None else out
    p = native._ptr
    fn = getattr(native.library(), f"fused_fwd_{native._SUFFIX[k.dtype]}")
    fn(*flags, p(k), p(bias), p(h0), p(h), p(m8), p(r8), p(hr), B, T, H, native._threads(h.numel()))
    return h


def bwd_outputs(k, h0, hr, gh, need_bias: bool, need_h0: bool, need_hr: bool):
    """What every backward kernel call needs besides its inputs: gh with unit stride along H, and the buffers for
    the per-row bias gradient (B, G) (rows run in parallel, so each writes its own slot), dL/dh0 and dL/dh_reset
    (each None when not wanted)."""
    db_rows = k.new_empty(k.shape[0], k.shape[2]) if need_bias else None
    dh0 = torch.empty_like(h0) if (h0 is not None and need_h0) else None
    dhr = torch.empty_like(hr) if (hr is not None and need_hr) else None
    return unit_stride_rows(gh), db_rows, dh0, dhr


def run_bwd(flags, k, bias, h, h0, hr, m8, r8, gh, need_bias: bool, need_h0: bool, need_hr: bool,
            scratch_gk: bool = False):
    """The backward kernel: (dL/dk (B, T, G), dL/dbias (G,) | None, dL/dh0 | None, dL/dh_reset | None).

    scratch_gk: dL/dk goes to this thread's reusable workspace (valid only until the next call; for callers
    that consume it themselves) instead of a fresh tensor."""
    B, T, H = h.shape
    gh, db_rows, dh0, dhr = bwd_outputs(k, h0, hr, gh, need_bias, need_h0, need_hr)
    gk = native.workspace(k.shape, k) if scratch_gk else native.empty_large(k.shape, k)
    p = native._ptr
    fn = getattr(native.library(), f"fused_bwd_{native._SUFFIX[k.dtype]}")
    fn(*flags, p(k), p(bias), p(h), p(h0), p(gh), gh.stride(0), gh.stride(1), p(gk), p(db_rows), p(dh0), p(m8),
       p(r8), p(hr), p(dhr), B, T, H, native._threads(h.numel()))
    return gk, None if db_rows is None else db_rows.sum(0), dh0, dhr


def prepare(h0, h_reset, mask, reset):
    """Contiguous copies of the optional inputs in the kernel's layout (masks as uint8)."""
    return (None if h0 is None else h0.contiguous(), None if h_reset is None else h_reset.contiguous(),
            None if mask is None else mask.to(torch.uint8).contiguous(),   # (B, T), 0 = padding
            None if reset is None else reset.to(torch.uint8).contiguous())  # (B, T), 1 = restart


class FusedCellFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, k, bias, h0, h_reset, mask, reset, cell_id: int, normalize: bool, cand_g: bool):
        k = k.contiguous()
        bias = None if bias is None else bias.contiguous()
        h0c, hrc, m8, r8 = prepare(h0, h_reset, mask, reset)
        ctx.flags = (cell_id, int(normalize), int(cand_g))
        h = run_fwd(ctx.flags, k, bias, h0c, hrc, m8, r8)
        ctx.present = tuple(t is not None for t in (bias, h0c, hrc, m8, r8))
        ctx.save_for_backward(k, h, *(_opt(t) for t in (bias, h0c, hrc, m8, r8)))
        return h

    @staticmethod
    def backward(ctx, gh):
        k, h, *opt = ctx.saved_tensors
        bias, h0, hr, m8, r8 = (t if present else None for t, present in zip(opt, ctx.present))
        need = ctx.needs_input_grad
        gk, db, dh0, dhr = run_bwd(ctx.flags, k, bias, h, h0, hr, m8, r8, gh, bias is not None and need[1],
                                   need[2], need[3])
        return gk, db, dh0, dhr, None, None, None, None, None


def check_args(cell: str, candidate: str, B: int, T: int, G: int, ref: torch.Tensor, h0, h_reset, mask, reset,
               bias) -> tuple[int, int]:
    """Validate the arguments shared by the fused entry points; returns (kernel cell id, number of gates)."""
    if cell not in _CELLS:
        raise ValueError(f"cell: expected one of {tuple(_CELLS)}, got {cell!r}")
    if candidate not in ("g", "identity"):
        raise ValueError(f"candidate: expected 'g' or 'identity', got {candidate!r}")
    cell_id, n_gates = _CELLS[cell]
    if T == 0 or G == 0 or G % n_gates:
        raise ValueError(f"expected T >= 1 and n_gates * H gate pre-activations (a last dim divisible by "
                         f"{n_gates}, {cell}), got T = {T}, {G}")
    if ref.device.type != "cpu" or ref.dtype not in native._SUFFIX:
        raise TypeError(f"expected float32/float64 CPU tensors, got {ref.dtype} on {ref.device}")
    if not native.available():
        raise RuntimeError(f"fused kernels unavailable: {native.unavailable_reason()}")
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


def fused_cell_scan(cell: str, k: torch.Tensor, h0: torch.Tensor | None = None, *, candidate: str = "g",
                    normalize: bool = True, mask: torch.Tensor | None = None, reset: torch.Tensor | None = None,
                    h_reset: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """All states (B, T, H) of minGRU (``cell='mingru'``) or minLSTM (``'minlstm'``) from pre-activations k.

    ``normalize`` applies to minLSTM only (f/(f+i), i/(f+i)); ``candidate`` is 'g' (the paper's) or 'identity'.
    mask (B, T) bool: False = padding, the state is carried (a = 1, b = 0). reset (B, T) bool: the state
    restarts at these steps from h_reset (B, H) (zeros if None); mask wins where both are set.
    bias (n_gates * H,), if given, is added to k inside the kernel (the result equals passing k + bias).
    """
    if not isinstance(k, torch.Tensor) or k.dim() != 3:
        got = tuple(k.shape) if isinstance(k, torch.Tensor) else type(k).__name__
        raise ValueError(f"k: expected a tensor of shape (B, T, n_gates * H), got {got}")
    B, T, G = k.shape
    cell_id, _ = check_args(cell, candidate, B, T, G, k, h0, h_reset, mask, reset, bias)
    return FusedCellFn.apply(k, bias, h0, h_reset, mask, reset, cell_id, bool(normalize) and cell == "minlstm",
                             candidate == "g")
