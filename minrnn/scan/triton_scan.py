"""The `triton` scan implementation: launches the fused kernels of `triton_kernels.py`, with autograd.

`cell_scan_triton` takes a layer's gate pre-activations k (B, T, n_gates * H) and returns all states
(B, T, H) in k's dtype (fp32 arithmetic inside; fp64 for fp64 inputs); `scan_triton` is the plain
recurrence h_t = a_t h_{t-1} + b_t with the signature of the other scans. Triton is optional and imported
only here, on first use: CUDA tensors use the compiled kernels, CPU tensors run under Triton's interpreter
when ``TRITON_INTERPRET=1`` was set before triton was imported (that is how the test suite checks them).

Launch plan: one program per (batch row, BLOCK_H channels, chunk of time). When B * H / BLOCK_H programs
already fill the GPU (PROGRAMS_PER_SM per SM) time is one chunk and every operand is read once; otherwise
time is cut into chunks and a summary pass (one extra read of k) lets every chunk start from its true state.
"""
from __future__ import annotations

import importlib.util
import os

import torch

INSTALL_HINT = "install it with `pip install triton` (or `pip install 'minrnn[triton]'`)"
CELL_IDS = {"mingru": 0, "minlstm": 1, "linear": 2}
N_GATES = {"mingru": 2, "minlstm": 3}
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Below this many programs per SM, time is chunked (costing one extra read of k) to fill the GPU. A guess
# that the bench's sweep (`minrnn.bench.gpu`, n_chunks rows) is there to check on a real device.
PROGRAMS_PER_SM = 2
# Software pipelining of the tile loads (`tl.range(num_stages=...)`: cp.async prefetch of the next tiles into
# shared memory on sm_80+). For sm_90 it costs the forward 64 -> 80 registers, the minGRU backward 112 -> 128
# plus a 24-byte stack, hence 2 forward and 1 backward until measured (the bench sweeps both).
FWD_STAGES, BWD_STAGES = 2, 1


def installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpret_mode() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def unavailable_reason(device: torch.device) -> str | None:
    """None when the triton kernels can run on `device`, else why not (with the fix)."""
    if not installed():
        return f"triton is not installed: {INSTALL_HINT}"
    if device.type == "cuda" or (device.type == "cpu" and interpret_mode()):
        return None
    return (f"the triton kernels need CUDA tensors (or CPU tensors with TRITON_INTERPRET=1 set before "
            f"triton is imported), got device {device}")


def plan(B: int, T: int, H: int, device: torch.device, block_t: int | None = None,
         block_h: int | None = None, n_chunks: int | None = None) -> tuple[int, int, int, int]:
    """(BLOCK_T, BLOCK_H, chunk length, number of chunks) for one launch."""
    # 16 x 64 tiles at 4 warps: 8 values per thread; for sm_90 ptxas gives 64 registers forward, 112 (minGRU)
    # to 157 (minLSTM, masks) backward and no spills, where 32 x 64 needs 143 and 198-255 (+ spills).
    block_h = block_h or min(64, max(16, 1 << (H - 1).bit_length()))
    block_t = block_t or 16
    if n_chunks is None:
        programs = B * -(-H // block_h)
        target = 1
        if device.type == "cuda":
            target = PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
        n_chunks = min(-(-T // block_t), -(-target // programs), 1024)
    n_chunks = max(1, min(n_chunks, -(-T // block_t)))
    chunk = -(-(-(-T // n_chunks)) // block_t) * block_t  # a multiple of BLOCK_T
    return block_t, block_h, chunk, -(-T // chunk)


def _operands(cell: str, x: torch.Tensor, x_b: torch.Tensor | None):
    """Views (x1, x2, x3) sharing one (batch, time) stride pair, and H."""
    if cell == "linear":
        return x, x_b, x, x.shape[-1]
    H = x.shape[-1] // N_GATES[cell]
    parts = [x[..., i * H:(i + 1) * H] for i in range(N_GATES[cell])]
    return parts[0], parts[1], parts[-1], H


# The kernels as custom operators: torch.compile(fullgraph=True) traces through them (the fake implementations
# give the shapes) and torch.library.opcheck tests them. Launch overrides are plain ints (0 = the plan's choice).
_OPTS = "block_t: int, block_h: int, n_chunks: int, num_warps: int, stages: int, bwd_stages: int"
DOUBLE_BACKWARD = ("double backward (create_graph=True) is not supported by the 'triton' backend; use "
                   "scan_impl='reference' or 'chunked' for higher-order gradients")


def _cfg(block_t, block_h, n_chunks):
    return dict(block_t=block_t or None, block_h=block_h or None, n_chunks=n_chunks or None)


@torch.library.custom_op("minrnn::triton_scan", mutates_args=(), device_types=("cuda", "cpu"))
def triton_scan_op(x: torch.Tensor, x_b: torch.Tensor | None, h0: torch.Tensor | None, h_reset: torch.Tensor | None,
                   mask: torch.Tensor | None, reset: torch.Tensor | None, cell_id: int, normalize: bool,
                   cand_g: bool, block_t: int, block_h: int, n_chunks: int, num_warps: int, stages: int,
                   bwd_stages: int) -> torch.Tensor:
    from . import triton_kernels as K
    cell = _CELL_NAMES[cell_id]
    x1, x2, x3, H = _operands(cell, x, x_b)
    B, T = x.shape[:2]
    h = torch.empty(B, T, H, dtype=x.dtype, device=x.device)
    if h.numel() == 0:
        return h
    bt, bh, chunk, n = plan(B, T, H, x.device, **_cfg(block_t, block_h, n_chunks))
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    agg = torch.empty(B, n, 2, H, dtype=acc, device=x.device) if n > 1 else h
    args = dict(_common(cell, normalize, cand_g, x, h0, h_reset, mask, reset, bt, bh), num_warps=num_warps,
                STAGES=stages)
    ptrs = (h0 if h0 is not None else h, h_reset if h_reset is not None else h,
            mask if mask is not None else h, reset if reset is not None else h, agg)
    sizes = (T, H, chunk, n)
    strides = (x.stride(0), x.stride(1), h.stride(0), h.stride(1),
               h0.stride(0) if h0 is not None else 0, h_reset.stride(0) if h_reset is not None else 0)
    if n > 1:  # summaries of every chunk but the last, then the states
        K.scan_fwd_kernel[(-(-H // bh), n - 1, B)](x1, x2, x3, h, *ptrs, *sizes, 0, *strides, PHASE=1, **args)
    K.scan_fwd_kernel[(-(-H // bh), n, B)](x1, x2, x3, h, *ptrs, *sizes, 0, *strides,
                                           PHASE=2 if n > 1 else 0, **args)
    return h


@triton_scan_op.register_fake
def _(x, x_b, h0, h_reset, mask, reset, cell_id, normalize, cand_g, block_t, block_h, n_chunks, num_warps, stages,
      bwd_stages):
    H = x.shape[-1] // N_GATES.get(_CELL_NAMES[cell_id], 1)
    return x.new_empty(x.shape[0], x.shape[1], H)


@torch.library.custom_op("minrnn::triton_scan_bwd", mutates_args=(), device_types=("cuda", "cpu"))
def triton_scan_bwd_op(x: torch.Tensor, x_b: torch.Tensor | None, h: torch.Tensor, h0: torch.Tensor | None,
                       h_reset: torch.Tensor | None, mask: torch.Tensor | None, reset: torch.Tensor | None,
                       gh: torch.Tensor, cell_id: int, normalize: bool, cand_g: bool, block_t: int, block_h: int,
                       n_chunks: int, num_warps: int,
                       bwd_stages: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from . import triton_kernels as K
    cell = _CELL_NAMES[cell_id]
    gh = gh.contiguous()
    x1, x2, x3, H = _operands(cell, x, x_b)
    B, T = x.shape[:2]
    if h.numel() == 0:  # nothing flows back from an empty output
        return (torch.zeros_like(x), torch.zeros_like(x_b) if x_b is not None else x.new_empty(0),
                torch.zeros_like(h0) if h0 is not None else x.new_empty(0),
                torch.zeros_like(h_reset) if h_reset is not None else x.new_empty(0))
    dx = torch.empty_like(x)
    dx_b = torch.empty_like(x_b) if x_b is not None else x.new_empty(0)
    g_h0 = torch.empty_like(h0) if h0 is not None else x.new_empty(0)
    bt, bh, chunk, n = plan(B, T, H, x.device, **_cfg(block_t, block_h, n_chunks))
    d1, d2, d3, _ = _operands(cell, dx, dx_b if x_b is not None else None)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    dh0 = g_h0 if h0 is not None else h
    dhr = torch.empty(B, n, H, dtype=acc, device=x.device) if h_reset is not None else h
    agg = torch.empty(B, n, 2, H, dtype=acc, device=x.device) if n > 1 else h
    args = dict(_common(cell, normalize, cand_g, x, h0, h_reset, mask, reset, bt, bh), num_warps=num_warps,
                STAGES=bwd_stages)
    ptrs = (h0 if h0 is not None else h, dh0, h_reset if h_reset is not None else h, dhr,
            mask if mask is not None else h, reset if reset is not None else h, agg)
    sizes = (T, H, chunk, n)
    strides = (x.stride(0), x.stride(1), h.stride(0), h.stride(1),
               h0.stride(0) if h0 is not None else 0, h_reset.stride(0) if h_reset is not None else 0)
    ops = (x1, x2, x3, h, gh, d1, d2, d3)
    if n > 1:  # summaries of every chunk but the first (reverse time), then the gradients
        K.scan_bwd_kernel[(-(-H // bh), n - 1, B)](*ops, *ptrs, *sizes, 1, *strides, PHASE=1, **args)
    K.scan_bwd_kernel[(-(-H // bh), n, B)](*ops, *ptrs, *sizes, 0, *strides, PHASE=2 if n > 1 else 0, **args)
    g_hr = dhr.sum(1).to(h_reset.dtype) if h_reset is not None else x.new_empty(0)
    return dx, dx_b, g_h0, g_hr


@triton_scan_bwd_op.register_fake
def _(x, x_b, h, h0, h_reset, mask, reset, gh, cell_id, normalize, cand_g, block_t, block_h, n_chunks, num_warps,
      bwd_stages):
    return (torch.empty_like(x), torch.empty_like(x_b) if x_b is not None else x.new_empty(0),
            torch.empty_like(h0) if h0 is not None else x.new_empty(0),
            torch.empty_like(h_reset) if h_reset is not None else x.new_empty(0))


def _setup(ctx, inputs, output):
    x, x_b, h0, h_reset, mask, reset, cell_id, normalize, cand_g, bt, bh, nc, warps, stages, bwd_stages = inputs
    ctx.flags = (cell_id, normalize, cand_g, bt, bh, nc, warps, bwd_stages)
    ctx.present = tuple(t is not None for t in (x_b, h0, h_reset, mask, reset))
    ctx.save_for_backward(x, output, *(t if t is not None else x.new_empty(0) for t in (x_b, h0, h_reset, mask, reset)))


def _backward(ctx, gh):
    x, h, *rest = ctx.saved_tensors
    x_b, h0, h_reset, mask, reset = (t if p else None for t, p in zip(rest, ctx.present))
    dx, dx_b, g_h0, g_hr = triton_scan_bwd_op(x, x_b, h, h0, h_reset, mask, reset, gh, *ctx.flags)
    return (dx, dx_b if x_b is not None else None, g_h0 if h0 is not None else None,
            g_hr if h_reset is not None else None) + (None,) * 11


def _no_double_backward(ctx, *grads):
    raise RuntimeError(DOUBLE_BACKWARD)


torch.library.register_autograd("minrnn::triton_scan", _backward, setup_context=_setup)
torch.library.register_autograd("minrnn::triton_scan_bwd", _no_double_backward)
_CELL_NAMES = {v: k for k, v in CELL_IDS.items()}


def _apply(cell, normalize, cand_g, cfg, x, x_b, h0, h_reset, mask, reset):
    cfg = dict(cfg)
    opts = (cfg.pop("block_t", 0) or 0, cfg.pop("block_h", 0) or 0, cfg.pop("n_chunks", 0) or 0,
            cfg.pop("num_warps", 4), cfg.pop("stages", FWD_STAGES), cfg.pop("bwd_stages", BWD_STAGES))
    if cfg:
        raise TypeError(f"launch options: expected block_t, block_h, n_chunks, num_warps, stages, bwd_stages, got "
                        f"{sorted(cfg)}")
    return triton_scan_op(x, x_b, h0, h_reset, mask, reset, CELL_IDS[cell], bool(normalize), bool(cand_g), *opts)


def _common(cell, normalize, cand_g, x, h0, h_reset, mask, reset, bt, bh) -> dict:
    import triton.language as tl
    return dict(CELL=CELL_IDS[cell], NORM=bool(normalize), CAND_G=bool(cand_g),
                ACC=tl.float64 if x.dtype == torch.float64 else tl.float32,
                HAS_H0=h0 is not None, HAS_HR=h_reset is not None, HAS_MASK=mask is not None,
                HAS_RESET=reset is not None, BLOCK_T=bt, BLOCK_H=bh)


def _check(x: torch.Tensor, h0, h_reset, mask, reset, H: int) -> None:
    reason = unavailable_reason(x.device)
    if reason is not None:
        raise RuntimeError(f"scan impl 'triton' is unavailable: {reason}")
    if x.dtype not in DTYPES:
        raise TypeError(f"triton scan: expected dtype in {DTYPES}, got {x.dtype}")
    B, T = x.shape[:2]
    for name, t in (("h0", h0), ("h_reset", h_reset)):  # any float dtype: under autocast k is bf16, h0 fp32
        if t is not None and (tuple(t.shape) != (B, H) or t.dtype not in DTYPES or t.device != x.device):
            raise ValueError(f"{name}: expected a ({B}, {H}) float tensor on {x.device}, got "
                             f"{tuple(t.shape)} {t.dtype} on {t.device}")
    for name, t in (("mask", mask), ("reset", reset)):
        if t is not None and (tuple(t.shape) != (B, T) or t.dtype != torch.bool or t.device != x.device):
            raise ValueError(f"{name}: expected a ({B}, {T}) bool tensor on {x.device}, got "
                             f"{tuple(t.shape)} {t.dtype} on {t.device}")


def _flag(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.contiguous().view(torch.uint8)


def _vec(t: torch.Tensor | None) -> torch.Tensor | None:
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def cell_scan_triton(cell: str, k: torch.Tensor, h0: torch.Tensor | None, *, candidate: str,
                     normalize: bool, mask: torch.Tensor | None = None, reset: torch.Tensor | None = None,
                     h_reset: torch.Tensor | None = None, **cfg) -> torch.Tensor:
    """All states (B, T, H) from pre-activations k (B, T, n_gates * H); the contract of `cells.cell_scan`.

    h_reset is only used where reset is set. cfg: launch overrides (block_t, block_h, n_chunks, num_warps,
    stages, bwd_stages) for tests and tuning.
    """
    if cell not in N_GATES:
        raise ValueError(f"cell: expected one of {tuple(N_GATES)}, got {cell!r}")
    if k.dim() != 3 or k.shape[-1] % N_GATES[cell]:
        raise ValueError(f"k: expected (B, T, {N_GATES[cell]} * H), got {tuple(k.shape)}")
    H = k.shape[-1] // N_GATES[cell]
    _check(k, h0, h_reset, mask, reset, H)
    h_reset = _vec(h_reset) if reset is not None else None
    k = k.contiguous()  # the gradient dk is allocated with k's strides: keep them dense
    return _apply(cell, normalize, candidate == "g", cfg, k, None, _vec(h0), h_reset, _flag(mask), _flag(reset))


def scan_triton(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, **cfg) -> torch.Tensor:
    """All states (B, T, D) of h_t = a_t h_{t-1} + b_t (the `linear_scan` contract)."""
    if a.dim() != 3 or b.shape != a.shape or b.dtype != a.dtype or b.device != a.device:
        raise ValueError(f"a, b: expected two (B, T, D) tensors of one dtype and device, got {tuple(a.shape)} "
                         f"{a.dtype} {a.device} and {tuple(b.shape)} {b.dtype} {b.device}")
    _check(a, h0, None, None, None, a.shape[-1])
    a, b = a.contiguous(), b.contiguous()
    return _apply("linear", False, False, cfg, a, b, _vec(h0), None, None, None)
