"""One recurrence, h_t = a_t * h_{t-1} + b_t over (B, T, D), several implementations, one dispatcher.

Implementations (all return every state, all differentiable in a, b and h0):
  reference  sequential loop (the spec; autograd through the loop)       -> `reference.py`
  logspace   Heinsen log-space parallel scan (the paper's appendix)       -> `logspace.py`
  chunked    linear-space chunked scan, analytic backward, fp32-exact     -> `chunked.py`
  native     compiled C kernel (OpenMP), when a C compiler is available   -> `native.py`
  triton     fused Triton kernels for CUDA tensors (optional dependency)  -> `triton_scan.py`
`auto` picks the fastest one available on the tensors' device (``triton`` on CUDA when it is installed).
"""
from __future__ import annotations

import torch

from .chunked import scan_chunked
from .logspace import scan_logspace
from .reference import scan_reference

IMPLS = ("reference", "logspace", "chunked", "native", "triton")


def native_available() -> bool:
    from . import native
    return native.available()


def triton_unavailable_reason(device) -> str | None:
    """None when the ``triton`` kernels can run on tensors of `device`, else why not (with the fix)."""
    from . import triton_scan
    return triton_scan.unavailable_reason(torch.device(device))


def available_impls(device="cpu") -> list[str]:
    """Names usable for tensors on `device` (``native`` only once its kernel compiled, ``triton`` on CUDA)."""
    device = torch.device(device)
    names = [n for n in IMPLS if n not in ("native", "triton")]
    if device.type == "cpu" and native_available():
        names.append("native")
    if device.type == "cuda" and triton_unavailable_reason(device) is None:
        names.append("triton")
    return names


def resolve_impl(impl: str, device: torch.device) -> str:
    """Turn ``auto`` into a concrete implementation name and reject unknown names."""
    if impl == "auto":
        if device.type == "cuda" and triton_unavailable_reason(device) is None:
            return "triton"
        return "native" if device.type == "cpu" and native_available() else "chunked"
    if impl not in IMPLS:
        raise ValueError(f"scan impl: expected one of {('auto',) + IMPLS}, got {impl!r}")
    if impl == "native" and not native_available():
        from . import native
        raise RuntimeError(f"scan impl 'native' is unavailable: {native.unavailable_reason()}")
    if impl == "triton" and triton_unavailable_reason(device) is not None:
        raise RuntimeError(f"scan impl 'triton' is unavailable: {triton_unavailable_reason(device)}")
    return impl


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
        if tuple(h0.shape) != (B, D):
            raise ValueError(f"h0: expected shape {(B, D)}, got {tuple(h0.shape)}")
        if h0.dtype != a.dtype or h0.device != a.device:
            raise TypeError(f"h0: expected dtype {a.dtype} on {a.device}, got {h0.dtype} on {h0.device}")


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None,
                impl: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Compute h_t = a_t * h_{t-1} + b_t for t = 0..T-1 with h_{-1} = h0 (zeros if None).

    a, b: (B, T, D) floating tensors; h0: (B, D). Returns (h, h_n): all states (B, T, D) and the last (B, D).
    ``logspace`` needs a > 0, b > 0 and h0 > 0 (it works on logarithms). NaN or inf in the inputs is not
    checked: it propagates to that step's state and every later one, as in the recurrence itself.
    """
    check_scan_inputs(a, b, h0)
    if a.shape[1] == 0:
        raise ValueError("a: expected at least one time step, got T = 0")
    impl = resolve_impl(impl, a.device)
    if impl == "reference":
        h = scan_reference(a, b, h0)
    elif impl == "logspace":
        for name, t in (("a", a), ("b", b), ("h0", h0)):
            if t is not None and not bool((t > 0).all()):
                raise ValueError(f"{name}: the logspace scan expected strictly positive values, got values <= 0 or NaN")
        h = scan_logspace(a.log(), b.log(), None if h0 is None else h0.log())
    elif impl == "chunked":
        h = scan_chunked(a, b, h0)
    elif impl == "triton":
        from .triton_scan import scan_triton
        h = scan_triton(a, b, h0)
    else:
        from .native import scan_native
        h = scan_native(a, b, h0)
    return h, h[:, -1]
