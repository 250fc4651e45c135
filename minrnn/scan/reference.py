"""Sequential reference for the first-order linear recurrence  h_t = a_t * h_{t-1} + b_t.

This loop is the specification every other scan implementation is tested against. It is plain
PyTorch, so autograd differentiates it step by step; pass fp64 tensors to get an oracle.
"""
from __future__ import annotations

import torch


def scan_reference(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Return all states h (B, T, D) of h_t = a_t * h_{t-1} + b_t, with h_{-1} = h0 (or 0)."""
    B, T, D = a.shape
    h = torch.zeros(B, D, dtype=a.dtype, device=a.device) if h0 is None else h0
    out = []
    for t in range(T):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)  # (B, T, D)
