"""Shared test helpers: the per-dtype tolerance table and an fp64 comparison that reports expected vs got."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if not torch.cuda.is_available():
    # Triton reads this when a kernel is decorated, and torch.compile (inductor) may import triton before
    # tests/test_triton.py does: set it before any test runs, so the kernels always run under the interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")
torch.set_num_threads(1)

# Tolerances against the fp64 sequential reference, as (rtol, atol) relative to the reference's scale.
# fp32 linear-space scans (chunked, native) are a few ulps per step; the log-space scan loses accuracy
# ~linearly in T in fp32 (paper-facts.md: ~1e-3 relative at T=4096); bf16 inputs round to 8 mantissa bits.
TOL = {
    ("linear", torch.float64): (1e-10, 1e-12),
    ("linear", torch.float32): (2e-5, 2e-5),
    ("logspace", torch.float64): (1e-9, 1e-11),
    ("logspace", torch.float32): (1e-3, 1e-3),
    # d/da of the log-space form goes through cumsum(log a) over all T steps: measured max error 9.5e-2 of
    # the gradient's scale at T=4096 (1.6e-2 at T=1000) in fp32. The paper's method, kept as it is.
    ("logspace-da", torch.float32): (0.2, 0.2),
    ("logspace-da", torch.float64): (1e-7, 1e-8),
    ("linear", torch.bfloat16): (3e-2, 3e-2),
}


def tol_for(impl: str, dtype: torch.dtype, what: str = ""):
    if impl == "logspace":
        return TOL[("logspace-da" if what == "da" else "logspace", dtype)]
    return TOL[("linear", dtype)]


def assert_close(got: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float, what: str = "") -> None:
    """|got - ref| <= atol * scale + rtol * |ref| elementwise, scale = max(1, max |ref|)."""
    got64, ref64 = got.detach().double(), ref.detach().double()
    assert got64.shape == ref64.shape, f"{what}: expected shape {tuple(ref64.shape)}, got {tuple(got64.shape)}"
    scale = max(1.0, ref64.abs().max().item()) if ref64.numel() else 1.0
    err = (got64 - ref64).abs()
    bound = atol * scale + rtol * ref64.abs()
    bad = ~(err <= bound)
    if bool(bad.any()):
        i = bad.nonzero()[0].tolist()
        pytest.fail(f"{what}: {int(bad.sum())} of {err.numel()} values off; max abs err {err.max().item():.3e} "
                    f"(scale {scale:.3e}); first at {i}: expected {ref64[tuple(i)].item():.9g}, "
                    f"got {got64[tuple(i)].item():.9g}")
