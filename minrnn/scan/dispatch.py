"""The one decision of what runs: `select_backend(requested, device, dtype)`.

Every public entry point (`linear_scan`, the layers, `SequenceModel` through them) calls it once per call,
after validating its inputs; nothing else picks a backend. The names say what runs:
  reference, logspace, chunked  pure PyTorch (any device and float dtype)
  cpu                            the compiled C kernels (CPU tensors; float32/float64 natively, bf16/fp16
                                 computed in float32 and cast back)
  triton                         the Triton kernels (CUDA tensors; CPU tensors under TRITON_INTERPRET=1)
`auto` is triton on CUDA when it is installed, cpu on CPU tensors when the kernels compiled, else chunked
(with a one-time warning that says why). ``native`` is accepted as
the old name of ``cpu``. Empty inputs (B = 0 or D = 0) run `reference`, which returns empty outputs and zero
gradients on every device.
"""
from __future__ import annotations

import torch

BACKENDS = ("reference", "logspace", "chunked", "cpu", "triton")
IMPLS = BACKENDS  # the historical name of the tuple
ALIASES = {"native": "cpu"}


def check_name(name: str) -> str:
    """The canonical backend name of `name` ('auto' or one of BACKENDS or an alias); ValueError otherwise."""
    if not isinstance(name, str) or ALIASES.get(name, name) not in ("auto",) + BACKENDS:
        raise ValueError(f"scan_impl: expected one of {('auto',) + BACKENDS}, got {name!r}")
    return ALIASES.get(name, name)


@torch.compiler.assume_constant_result
def _cpu_ok() -> bool:
    from . import cpu
    return cpu.available()


def _triton_reason(device: torch.device) -> str | None:
    from . import triton_scan
    return triton_scan.unavailable_reason(device)


def select_backend(requested: str, device, dtype: torch.dtype | None = None, *, empty: bool = False) -> str:
    """The backend that runs `requested` ('auto' or a name) on tensors of `device` and `dtype`.

    Raises ValueError for an unknown name or a dtype/device the named backend cannot run (naming what can),
    RuntimeError when a named compiled backend is unavailable (with the reason)."""
    name = check_name(requested)
    device = torch.device(device)
    if empty:
        return "reference"
    if name == "auto":
        if device.type == "cuda" and _triton_reason(device) is None:
            return "triton"
        if device.type == "cpu":
            if _cpu_ok():
                return "cpu"
            _warn_cpu()
        return "chunked"
    if name == "cpu":
        if device.type != "cpu":
            raise ValueError(f"scan_impl 'cpu': expected CPU tensors, got {dtype} on {device}; 'auto' or "
                             "'chunked' run on any device")
        if not _cpu_ok():
            from . import cpu
            raise RuntimeError(f"scan_impl 'cpu' is unavailable: {cpu.unavailable_reason()}; 'chunked' runs "
                               "without a compiler")
    if name == "triton" and _triton_reason(device) is not None:
        raise RuntimeError(f"scan_impl 'triton' is unavailable: {_triton_reason(device)}")
    return name


def _warn_cpu() -> None:
    from . import build, cpu
    build.warn_once("the compiled CPU kernels", cpu.unavailable_reason(), "the pure-PyTorch 'chunked' scan")


def available_impls(device="cpu") -> list[str]:
    """Backends usable for tensors on `device` (``cpu`` once its kernels compiled, ``triton`` on CUDA)."""
    device = torch.device(device)
    names = ["reference", "logspace", "chunked"]
    if device.type == "cpu" and _cpu_ok():
        names.append("cpu")
    if device.type == "cuda" and _triton_reason(device) is None:
        names.append("triton")
    return names
