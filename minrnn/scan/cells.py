"""Cell-level dispatch: gate pre-activations k -> all states, for minGRU (k = [k_z, k_h]) and minLSTM
(k = [k_f, k_i, k_h]), each chunk (B, T, H) along the last axis of k (B, T, n_gates * H).

This is the one place where a layer's recurrence is computed. The generic route forms the coefficients
(a, b) with `gates.py` and calls `linear_scan`; fused kernels (which compute the gate math inside the scan
and recompute it in backward) plug in here by implementation name: ``native`` on fp32/fp64 CPU tensors
runs `fused.py` (masks and resets included); everything else (and bf16/fp16) takes the generic route.
`linear_cell_scan` is the layer's entry point: it also owns the gate matmul k = x W^T + bias, which on the fused
CPU route runs in the same autograd node (`fused_linear.py`: no bias pass, bias gradient inside the kernel).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import gates
from . import linear_scan
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
              impl: str, mask: torch.Tensor | None = None, reset: torch.Tensor | None = None,
              h_reset: torch.Tensor | None = None) -> torch.Tensor:
    """All states (B, T, H) of one layer direction.

    impl: a concrete scan name (already resolved). mask (B, T) bool: False = padding (state carried, a=1, b=0).
    reset (B, T) bool: restart at these steps from h_reset (B, H) (zeros if None).
    """
    if impl == "logspace":
        if mask is not None or reset is not None:
            raise ValueError("scan_impl='logspace' does not support mask/lengths/reset; use 'auto'")
        if candidate != "g":
            raise ValueError("scan_impl='logspace' needs candidate='g' (states must stay positive)")
        log_h0 = None
        if h0 is not None:
            if not bool((h0 > 0).all()):
                raise ValueError("scan_impl='logspace' expected a strictly positive h0, got values <= 0")
            log_h0 = h0.log()
        log_a, log_b = log_coeffs(cell, k, normalize)
        return scan_logspace(log_a, log_b, log_h0)
    if impl == "triton":  # gate math, reset and mask fused into the GPU scan (`triton_scan.py`)
        from .triton_scan import cell_scan_triton
        return cell_scan_triton(cell, k, h0, candidate=candidate, normalize=normalize, mask=mask, reset=reset,
                                h_reset=h_reset)
    if impl == "native":
        from . import fused
        if fused.supported(k):  # gate math, mask and reset inside the C scan; recomputed in backward
            # h_reset only matters (and only gets a gradient) where there are resets
            return fused.fused_cell_scan(cell, k, h0, candidate=candidate, normalize=normalize, mask=mask,
                                         reset=reset, h_reset=h_reset if reset is not None else None)
    a, b = coeffs(cell, k, candidate, normalize)  # (B, T, H) each
    if h0 is not None and h0.dtype != a.dtype:  # under autocast k is bf16/fp16 while states are fp32
        h0 = h0.to(a.dtype)
    if reset is not None:
        r = reset.unsqueeze(-1)
        if h_reset is not None:  # restart from a non-zero initial state: h_t = a_t h_reset + b_t
            b = torch.where(r, b + a * h_reset.unsqueeze(1), b)
        a = a.masked_fill(r, 0.0)
    if mask is not None:
        m = mask.unsqueeze(-1)
        a = torch.where(m, a, torch.ones_like(a))
        b = b.masked_fill(~m, 0.0)
    h, _ = linear_scan(a, b, h0, impl)
    return h


def linear_cell_scan(cell: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     h0: torch.Tensor | None, *, candidate: str, normalize: bool, impl: str,
                     mask: torch.Tensor | None = None, reset: torch.Tensor | None = None,
                     h_reset: torch.Tensor | None = None) -> torch.Tensor:
    """`cell_scan` of k = x weight^T + bias (x (B, T, D), weight (n_gates * H, D)); the same result and gradients."""
    if impl == "native":
        from . import fused_linear
        if fused_linear.supported(x, weight, bias):
            return fused_linear.fused_linear_cell_scan(cell, x, weight, bias, h0, candidate=candidate,
                                                       normalize=normalize, mask=mask, reset=reset,
                                                       h_reset=h_reset if reset is not None else None)
    return cell_scan(cell, F.linear(x, weight, bias), h0, candidate=candidate, normalize=normalize, impl=impl,
                     mask=mask, reset=reset, h_reset=h_reset)
