"""A layer direction's recurrence on a chosen backend: x, W, bias -> all states, for minGRU (k = [k_z, k_h])
and minLSTM (k = [k_f, k_i, k_h]), each chunk (B, T, H) along the last axis of k = x W^T + bias.

`linear_cell_scan` is what the layers call, with a backend already chosen by `dispatch.select_backend`:
  cpu        one custom op for the whole direction (`cpu.cpu_linear_cell`: matmul, gate math, scan) on
             float32/float64; bf16/fp16 and CPU autocast: the gate math in PyTorch, the C scan in float32
  triton     k = F.linear(...), then the fused gate-math + scan op (`triton_scan.py`)
  logspace   log-coefficients and the log-space scan (no masks/resets, positive candidate only)
  reference, chunked   (a, b) from `gates.py` in PyTorch, masks/resets applied to them, then `linear_scan`'s
             backend of that name
Masks: False = padding, the state is carried (a = 1, b = 0). Resets: the state restarts from h_reset (B, H)
(zeros if None) at the marked steps; on a padded step a reset does nothing (the padding wins; see the layers).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import gates
from . import _run
from .logspace import scan_logspace


def coeffs(cell: str, k: torch.Tensor, candidate: str, normalize: bool):
    """(a, b) of h_t = a_t h_{t-1} + b_t from pre-activations k (..., n_gates * H)."""
    if cell == "mingru":
        k_z, k_h = k.chunk(2, dim=-1)
        return gates.mingru_coeffs(k_z, k_h, candidate)
    k_f, k_i, k_h = k.chunk(3, dim=-1)
    return gates.minlstm_coeffs(k_f, k_i, k_h, candidate, normalize)


def log_coeffs(cell: str, k: torch.Tensor, normalize: bool):
    if cell == "mingru":
        return gates.mingru_log_coeffs(*k.chunk(2, dim=-1))
    k_f, k_i, k_h = k.chunk(3, dim=-1)
    return gates.minlstm_log_coeffs(k_f, k_i, k_h, normalize)


def cell_scan(cell: str, k: torch.Tensor, h0: torch.Tensor | None, *, candidate: str, normalize: bool,
              backend: str, mask: torch.Tensor | None = None, reset: torch.Tensor | None = None,
              h_reset: torch.Tensor | None = None) -> torch.Tensor:
    """All states (B, T, H) of one layer direction from its gate pre-activations k (B, T, n_gates * H)."""
    if backend == "logspace":
        if mask is not None or reset is not None:
            raise ValueError("scan_impl='logspace' does not support mask/lengths/reset; use 'auto'")
        if candidate != "g":
            raise ValueError("scan_impl='logspace' needs candidate='g' (states must stay positive)")
        log_h0 = None
        if h0 is not None:
            if not bool((h0 > 0).all()):
                raise ValueError("scan_impl='logspace' expected a strictly positive h0, got values <= 0")
            log_h0 = h0.log()
        return scan_logspace(*log_coeffs(cell, k, normalize), log_h0)
    if backend == "triton":  # gate math, reset and mask fused into the GPU scan
        from .triton_scan import cell_scan_triton
        return cell_scan_triton(cell, k, h0, candidate=candidate, normalize=normalize, mask=mask, reset=reset,
                                h_reset=h_reset if reset is not None else None)
    if backend == "cpu" and k.dtype in (torch.float32, torch.float64):
        from .cpu import CELLS, cpu_cell
        return cpu_cell(k, None, h0, h_reset if reset is not None else None, mask, reset, CELLS[cell][0],
                        bool(normalize) and cell == "minlstm", candidate == "g")
    a, b = coeffs(cell, k, candidate, normalize)  # (B, T, H) each
    if h0 is not None and h0.dtype != a.dtype:  # under autocast k is bf16/fp16 while states are fp32
        h0 = h0.to(a.dtype)
    if reset is not None:
        r = reset.unsqueeze(-1)
        if h_reset is not None:  # restart from a non-zero initial state: h_t = a_t h_reset + b_t
            b = torch.where(r, b + a * h_reset.unsqueeze(1).to(b.dtype), b)
        a = a.masked_fill(r, 0.0)
    if mask is not None:
        m = mask.unsqueeze(-1)
        a = torch.where(m, a, torch.ones_like(a))
        b = b.masked_fill(~m, 0.0)
    return _run(backend, a, b, h0)[0]


def linear_cell_scan(cell: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     h0: torch.Tensor | None, *, candidate: str, normalize: bool, backend: str,
                     mask: torch.Tensor | None = None, reset: torch.Tensor | None = None,
                     h_reset: torch.Tensor | None = None, cpu_matmul: str = "auto") -> torch.Tensor:
    """`cell_scan` of k = x weight^T + bias (x (B, T, D), weight (n_gates * H, D)); the same result and
    gradients on every backend. `cpu_matmul` (cpu backend only): where the matmuls run (see `cpu.py`)."""
    if backend == "cpu" and x.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled("cpu"):
        from .cpu import CELLS, cpu_linear_cell
        h, _ = cpu_linear_cell(x, weight, bias, h0, h_reset if reset is not None else None, mask, reset,
                               CELLS[cell][0], bool(normalize) and cell == "minlstm", candidate == "g", cpu_matmul)
        return h
    return cell_scan(cell, F.linear(x, weight, bias), h0, candidate=candidate, normalize=normalize, backend=backend,
                     mask=mask, reset=reset, h_reset=h_reset)

