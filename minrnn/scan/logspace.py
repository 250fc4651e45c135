"""Log-space parallel scan (Heinsen 2023), the form given in the paper's appendix.

With log a_t and log b_t (and log h_0), all states come from two prefix operations:
    a*_t    = cumsum_{s<=t} log a_s
    log h_t = a*_t + logcumsumexp_{s<=t}(log b_s - a*_s)
It only represents positive states (b_t > 0, h_0 > 0), which is why the paper introduces the positive
candidate g(.). In fp32 its error grows with T (about 1e-3 relative at T=4096) and `logcumsumexp` is slow on
CPU; it is kept because it is the paper's method and a useful second opinion.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def scan_logspace(log_a: torch.Tensor, log_b: torch.Tensor,
                  log_h0: torch.Tensor | None = None) -> torch.Tensor:
    """Return states h (B, T, D) in linear space from log-coefficients (B, T, D) and log h0 (B, D)."""
    if log_h0 is not None:
        # Treat h0 as a state at t = -1 with coefficient a = 1 (log a = 0); drop it from the output.
        log_a = F.pad(log_a, (0, 0, 1, 0))
        log_b = torch.cat([log_h0.unsqueeze(1), log_b], dim=1)
    a_star = torch.cumsum(log_a, dim=1)  # (B, T[+1], D)
    log_h = a_star + torch.logcumsumexp(log_b - a_star, dim=1)
    if log_h0 is not None:
        log_h = log_h[:, 1:]
    return torch.exp(log_h)
