"""One recurrence, h_t = a_t * h_{t-1} + b_t over (B, T, D), several backends, one dispatcher.

Backends (every one returns all states and is differentiable in a, b and h0):
  reference  sequential loop (the spec; autograd through the loop; double backward)     -> `reference.py`
  logspace   Heinsen log-space parallel scan (the paper's appendix; positive values)    -> `logspace.py`
  chunked    linear-space chunked scan, analytic backward (itself differentiable)       -> `chunked.py`
  cpu        the compiled C kernels as custom operators (fp32/fp64 CPU tensors)         -> `cpu.py`
  triton     the Triton kernels as custom operators (CUDA; the CPU interpreter in tests) -> `triton_scan.py`
`select_backend` (`dispatch.py`) is the one function that decides, once per call, what runs; layers use the
same backends through `cells.py`, which adds the gate math (fused into the kernel on `cpu` and `triton`).
"""
from __future__ import annotations

import torch

from .chunked import scan_chunked
from .dispatch import BACKENDS, IMPLS, available_impls, check_name, select_backend  # noqa: F401
from .logspace import scan_logspace
from .reference import scan_reference


def check_scan_inputs(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> None:
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")
    if a.dim() != 3:
        raise ValueError(f"a: expected shape (B, T, D), got {tuple(a.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"b: expected shape {tuple(a.shape)} (same as a), got {tuple(b.shape)}")
    if a.dtype != b.dtype or a.device != b.device:
        raise TypeError(f"b: expected dtype {a.dtype} on {a.device} (as a), got {b.dtype} on {b.device}")
    if h0 is not None:
        B, _, D = a.shape
        if not isinstance(h0, torch.Tensor) or tuple(h0.shape) != (B, D):
            raise ValueError(f"h0: expected shape {(B, D)}, got {tuple(getattr(h0, 'shape', ()))}")
        if h0.dtype != a.dtype or h0.device != a.device:
            raise TypeError(f"h0: expected dtype {a.dtype} on {a.device}, got {h0.dtype} on {h0.device}")


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None,
                impl: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Compute h_t = a_t * h_{t-1} + b_t for t = 0..T-1 with h_{-1} = h0 (zeros if None).

    a, b: (B, T, D) floating tensors; h0: (B, D). Returns (h, h_n): all states (B, T, D) and the last (B, D).
    B = 0 or D = 0 give empty outputs. ``logspace`` needs a > 0, b > 0 and h0 > 0 (it works on logarithms).
    NaN or inf in the inputs is not checked: it propagates to that step's state and every later one, as in
    the recurrence itself.
    """
    check_scan_inputs(a, b, h0)
    if a.shape[1] == 0:
        raise ValueError("a: expected at least one time step, got T = 0")
    backend = select_backend(impl, a.device, a.dtype, empty=a.numel() == 0)
    return _run(backend, a, b, h0)


def _run(backend: str, a, b, h0) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "reference":
        h = scan_reference(a, b, h0)
    elif backend == "logspace":
        for name, t in (("a", a), ("b", b), ("h0", h0)):
            if t is not None and not bool((t > 0).all()):
                raise ValueError(f"{name}: the logspace scan expected strictly positive values, got values <= 0 or NaN")
        h = scan_logspace(a.log(), b.log(), None if h0 is None else h0.log())
    elif backend == "chunked":
        h = scan_chunked(a, b, h0)
    elif backend == "triton":
        from .triton_scan import scan_triton
        h = scan_triton(a, b, h0)
    else:
        from .cpu import CPU_DTYPES, cpu_scan
        if a.dtype in CPU_DTYPES:
            h = cpu_scan(a, b, h0)
        else:  # bf16/fp16: the C scan accumulates in fp32; the result is cast back
            h = cpu_scan(a.float(), b.float(), None if h0 is None else h0.float()).to(a.dtype)
    return h, h[:, -1]


def triton_unavailable_reason(device) -> str | None:
    """None when the ``triton`` kernels can run on tensors of `device`, else why not (with the fix)."""
    from .dispatch import _triton_reason
    return _triton_reason(torch.device(device))
