"""Gate math of minGRU and minLSTM: from input-only pre-activations to the coefficients of h_t = a_t h_{t-1} + b_t.

minGRU  (paper eq.):  z = sigmoid(k_z),  a = 1 - z,  b = z * c(k_h)
minLSTM (paper eq.):  f = sigmoid(k_f),  i = sigmoid(k_i),  normalised f' = f/(f+i), i' = i/(f+i),
                      a = f',  b = i' * c(k_h)          (without normalisation: a = f, b = i * c(k_h))
where the candidate c is the paper's positive g(x) = x + 0.5 (x >= 0), sigmoid(x) (x < 0), or the identity.
Both a linear form (a, b) and the log form (log a, log b) used by the log-space scan are given; the log form
is written with softplus so that it never takes the log of a rounded-to-zero sigmoid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CANDIDATES = ("g", "identity")


def g(x: torch.Tensor) -> torch.Tensor:
    """The paper's positive, continuous candidate activation."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x), computed without forming g(x) for x < 0."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def candidate(k_h: torch.Tensor, kind: str) -> torch.Tensor:
    return g(k_h) if kind == "g" else k_h


def mingru_coeffs(k_z: torch.Tensor, k_h: torch.Tensor, cand: str) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.sigmoid(k_z)
    # 1 - sigmoid(k) = sigmoid(-k): exact for large k where 1 - z would round to 0.
    return torch.sigmoid(-k_z), z * candidate(k_h, cand)


def minlstm_coeffs(k_f: torch.Tensor, k_i: torch.Tensor, k_h: torch.Tensor, cand: str,
                   normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if normalize:
        # f/(f+i) = sigmoid(log f - log i) = sigmoid(softplus(-k_i) - softplus(-k_f)): no division by f+i.
        d = F.softplus(-k_f) - F.softplus(-k_i)
        return torch.sigmoid(-d), torch.sigmoid(d) * candidate(k_h, cand)
    return torch.sigmoid(k_f), torch.sigmoid(k_i) * candidate(k_h, cand)


def mingru_log_coeffs(k_z: torch.Tensor, k_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return -F.softplus(k_z), -F.softplus(-k_z) + log_g(k_h)


def minlstm_log_coeffs(k_f: torch.Tensor, k_i: torch.Tensor, k_h: torch.Tensor,
                       normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if normalize:
        d = F.softplus(-k_f) - F.softplus(-k_i)
        return -F.softplus(d), -F.softplus(-d) + log_g(k_h)
    return -F.softplus(-k_f), -F.softplus(-k_i) + log_g(k_h)
