"""What `minrnn bench` measures: a list of `Row`s, each a factory (config, size) -> a callable timed as is.

Groups (the size is the sequence length for train/scan, the batch size for infer):
  train  one layer, forward + backward of y.sum() w.r.t. the weights (x needs no grad), width D -> D:
         minGRU/minLSTM on each backend ("fused" = the `cpu` backend, `scan/cpu.py`: one custom op per layer
         direction, the default on CPU, its matmuls inside the kernels on fp32; "fused mm" = the same op with
         cpu_matmul="off", torch.mm around the kernels; chunked, logspace), nn.GRU/nn.LSTM (oneDNN/cuDNN), the
         paper's sequential baseline (a Python loop over nn.GRUCell/nn.LSTMCell), the peer `mingru-pytorch`
         (when installed) and the matmul floors (the two torch.mm GEMMs of a layer's input projection, 2H or
         3H gate outputs: the floor of a layer built on torch.mm).
  scan   h_t = a_t h_{t-1} + b_t alone on (B, T, D) against an add that reads two tensors and writes one
         (the bandwidth floor), forward and forward + backward.
  infer  step(): per-token latency and tokens/s of one layer and of a small 2-layer LM, against nn.GRU.
`ROWS` is the registry; a device section (e.g. CUDA rows) appends to it with `devices=("cuda",)`.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn


@dataclass
class Row:
    name: str
    group: str                                  # train | scan | infer
    make: Callable[["object", int], Callable[[], None]]  # (BenchConfig, size) -> timed callable
    ref: str | None = None                      # the row this one's speed-up is computed against
    requires: Callable[[], str | None] | None = None  # reason the row cannot run here, or None
    slow: bool = False                          # a Python time loop: skipped above BenchConfig.loop_max_len
    max_len: int | None = None                  # never run above this length (cost grows faster than T)
    devices: tuple = ("cpu",)
    steps: int = 1                              # infer: tokens per timed call

    def unavailable(self, device: str) -> str | None:
        if device.split(":")[0] not in self.devices:
            return f"not a {device} row"
        return self.requires() if self.requires else None


def _need_native() -> str | None:
    from ..scan import cpu
    return None if cpu.available() else f"the cpu backend is unavailable: {cpu.unavailable_reason()}"


def _need_peer() -> str | None:
    if importlib.util.find_spec("minGRU_pytorch") is None or importlib.util.find_spec("einops") is None:
        return "mingru-pytorch not installed (pip install mingru-pytorch einops)"
    return None


def _fk(cfg) -> dict:
    return {"device": cfg.device, "dtype": getattr(torch, cfg.dtype)}


def _x(cfg, T: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(cfg.batch, T, cfg.width, generator=g).to(**_fk(cfg))


def _train(build: Callable[[object], nn.Module], call=None, matmul: str = "auto"):
    """Row factory: a forward + backward step of the module `build(cfg)` on x (B, T, D); `matmul` is the
    cpu_matmul of our layers (where the cpu backend runs their matmuls)."""
    def make(cfg, T):
        torch.manual_seed(0)
        mod = build(cfg).to(**_fk(cfg))
        if hasattr(mod, "cpu_matmul"):
            mod.cpu_matmul = matmul
        x = _x(cfg, T)
        fwd = call or (lambda m, x: m(x)[0])

        def step():
            for p in mod.parameters():
                p.grad = None
            fwd(mod, x).sum().backward()
        return step
    return make


def _cell_loop(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The paper's sequential baseline: one nn.GRUCell/nn.LSTMCell call per time step."""
    B, T, _ = x.shape
    h = x.new_zeros(B, m.hidden_size)
    state = h if isinstance(m, nn.GRUCell) else (h, h)
    outs = []
    for t in range(T):
        state = m(x[:, t], state)
        outs.append(state if isinstance(m, nn.GRUCell) else state[0])
    return torch.stack(outs, dim=1)


def _peer(cls_name: str):
    def build(cfg):
        import minGRU_pytorch
        from minGRU_pytorch.minLSTM import minLSTM
        return minLSTM(cfg.width) if cls_name == "minLSTM" else minGRU_pytorch.minGRU(cfg.width)
    return build


def _min(cls_name: str, impl: str):
    def build(cfg):
        from ..layers import MinGRU, MinLSTM
        return (MinGRU if cls_name == "minGRU" else MinLSTM)(cfg.width, cfg.width, scan_impl=impl)
    return build


def train_rows() -> list[Row]:
    rows = []
    for cell, ref in (("minGRU", "nn.GRU"), ("minLSTM", "nn.LSTM")):
        rows += [
            Row(f"{cell} fused", "train", _train(_min(cell, "cpu")), ref, _need_native),
            Row(f"{cell} fused mm", "train", _train(_min(cell, "cpu"), matmul="off"), ref, _need_native),
            Row(f"{cell} chunked", "train", _train(_min(cell, "chunked")), ref),
            Row(f"{cell} logspace", "train", _train(_min(cell, "logspace")), ref),
        ]
    rows += [
        Row("nn.GRU", "train", _train(lambda c: nn.GRU(c.width, c.width, batch_first=True)), None,
            devices=("cpu", "cuda")),
        Row("nn.LSTM", "train", _train(lambda c: nn.LSTM(c.width, c.width, batch_first=True)), None,
            devices=("cpu", "cuda")),
        Row("GRU loop", "train", _train(lambda c: nn.GRUCell(c.width, c.width), call=_cell_loop), "nn.GRU",
            slow=True, devices=("cpu", "cuda")),
        Row("LSTM loop", "train", _train(lambda c: nn.LSTMCell(c.width, c.width), call=_cell_loop), "nn.LSTM",
            slow=True, devices=("cpu", "cuda")),
        Row("peer minGRU", "train", _train(_peer("minGRU"), call=lambda m, x: m(x)), "nn.GRU", _need_peer),
        Row("peer minLSTM", "train", _train(_peer("minLSTM"), call=lambda m, x: m(x)), "nn.LSTM", _need_peer),
        Row("matmul floor 2H", "train", _matmul_floor(2), "nn.GRU", devices=("cpu", "cuda")),
        Row("matmul floor 3H", "train", _matmul_floor(3), "nn.LSTM", devices=("cpu", "cuda")),
    ]
    return rows


def _matmul_floor(n_gates: int):
    """The matmul work a layer cannot avoid: k = x W^T (B*T x n_gates*H) and dL/dW = dk^T x, as two plain
    torch.mm GEMMs into preallocated outputs (no bias, no autograd, no fresh buffers). minGRU has 2H gate
    outputs, minLSTM 3H, so nn.GRU / floor 2H and nn.LSTM / floor 3H are the best speed-ups a layer built on
    torch.mm can reach here (the 'fused mm' rows); the in-kernel products of the 'fused' rows can beat it."""
    def make(cfg, T):
        x = _x(cfg, T).reshape(-1, cfg.width)  # (B*T, D)
        g = torch.Generator().manual_seed(2)
        G = n_gates * cfg.width
        W = torch.randn(G, cfg.width, generator=g).to(**_fk(cfg))
        dk = torch.randn(x.shape[0], G, generator=g).to(**_fk(cfg))
        k, dW = x.new_empty(x.shape[0], G), torch.empty_like(W)

        def step():
            torch.mm(x, W.t(), out=k)
            torch.mm(dk.t(), x, out=dW)
        return step
    return make


# ---- scan alone ----
def _ab(cfg, T: int, grad: bool):
    g = torch.Generator().manual_seed(1)
    shape = (cfg.batch, T, cfg.width)
    a = torch.sigmoid(torch.randn(shape, generator=g)).to(**_fk(cfg))
    b = (torch.rand(shape, generator=g) + 0.1).to(**_fk(cfg))  # positive: logspace can run too
    return a.requires_grad_(grad), b.requires_grad_(grad)


def _floor(cfg, T):
    a, b = _ab(cfg, T, False)
    out = torch.empty_like(a)
    return lambda: torch.add(a, b, out=out)


def _scan(impl: str, backward: bool):
    def make(cfg, T):
        from ..scan import linear_scan
        a, b = _ab(cfg, T, backward)
        gh = torch.ones_like(a)
        if not backward:
            return lambda: torch.no_grad()(linear_scan)(a, b, None, impl)

        def step():
            a.grad = b.grad = None
            linear_scan(a, b, None, impl)[0].backward(gh)
        return step
    return make


def _kernel(backward: bool):
    """The C scan on preallocated buffers, called directly: the kernel without allocation or autograd."""
    def make(cfg, T):
        from ..scan import cpu
        suf = cpu._SUFFIX[getattr(torch, cfg.dtype)]
        a, b = _ab(cfg, T, False)
        h, gh, da, db = (torch.empty_like(a) for _ in range(4))
        B, T_, D = a.shape
        p, lib = cpu._p, cpu.library()
        fwd = getattr(lib, f"scan_fwd_{suf}")
        bwd = getattr(lib, f"scan_bwd_{suf}")

        def step():
            fwd(p(a), p(b), None, p(h), B, T_, D, cpu._threads(a.numel()))
            if backward:
                bwd(p(a), p(h), None, p(gh), p(da), p(db), None, B, T_, D, cpu._threads(a.numel()))
        return step
    return make


def scan_rows() -> list[Row]:
    rows = [Row("add floor", "scan", _floor, None, devices=("cpu", "cuda")),
            Row("cpu kernel fwd", "scan", _kernel(False), "add floor", _need_native),
            Row("cpu kernel fwd+bwd", "scan", _kernel(True), "add floor", _need_native)]
    for impl in ("cpu", "chunked", "logspace", "reference"):
        need = _need_native if impl == "cpu" else None
        slow = impl == "reference"
        # autograd through the reference loop's a[:, t] slices materialises a (B, T, D) gradient per step:
        # O(T^2) work (51 s per call at T = 1024 here), so it stops at T = 1024
        rows += [Row(f"{impl} fwd", "scan", _scan(impl, False), "add floor", need, slow=slow),
                 Row(f"{impl} fwd+bwd", "scan", _scan(impl, True), "add floor", need, slow=slow,
                     max_len=1024 if slow else None)]
    return rows


# ---- inference: step() ----
def _step_layer(kind: str, steps: int):
    def make(cfg, B):
        from ..layers import MinGRU
        torch.manual_seed(0)
        D = cfg.width
        m = (MinGRU(D, D) if kind == "minGRU" else nn.GRU(D, D, batch_first=True)).to(**_fk(cfg)).eval()
        xs = torch.randn(steps, B, D).to(**_fk(cfg))

        @torch.no_grad()
        def run():
            h = torch.zeros(1, B, D, **_fk(cfg))
            for t in range(steps):
                if kind == "minGRU":
                    _, h = m.step(xs[t], h)
                else:
                    _, h = m(xs[t].unsqueeze(1), h)
        return run
    return make


def _step_lm(arch: str, steps: int, how: str = "pytorch"):
    """A small LM's step loop; `how` (minGRU only): "pytorch" (`SequenceModel.step`), "c" (the compiled step of
    `models/fast_step.py`, what generation uses where `step_route` allows) or "compile" (torch.compile of the
    PyTorch step; its compilation happens in the warm-up call)."""
    def make(cfg, B):
        from ..models.baselines import make_model
        from ..models.fast_step import fast_step
        torch.manual_seed(0)
        # Matched architectures: embedding -> 2 recurrent layers of width D -> head (the minGRU model without
        # its conv and MLP, expansion 1), so the rows differ in the recurrent layer only (plus minGRU's norms).
        kw = dict(conv_kernel=0, mlp_ratio=0.0, expansion=1.0) if arch == "mingru" else {}
        m = make_model(arch, vocab_size=256, d_model=cfg.width, n_layers=2, **kw).to(**_fk(cfg)).eval()
        toks = torch.randint(0, 256, (steps, B), device=cfg.device)
        step = {"pytorch": m.step, "c": lambda t, s: fast_step(m, t, s), "compile": torch.compile(m.step)}[how]

        @torch.no_grad()
        def run():
            state = m.init_state(B) if how == "compile" else None  # one state structure: no recompilation
            for t in range(steps):
                _, state = step(toks[t], state)
        return run
    return make


def infer_rows(steps: int = 64) -> list[Row]:
    return [Row("minGRU layer step", "infer", _step_layer("minGRU", steps), "nn.GRU layer step", steps=steps),
            Row("nn.GRU layer step", "infer", _step_layer("gru", steps), None, devices=("cpu", "cuda"),
                steps=steps),
            Row("minGRU LM step", "infer", _step_lm("mingru", steps), "nn.GRU LM step", steps=steps),
            Row("minGRU LM C step", "infer", _step_lm("mingru", steps, "c"), "minGRU LM step", steps=steps),
            Row("minGRU LM compiled step", "infer", _step_lm("mingru", steps, "compile"), "minGRU LM step",
                steps=steps),
            Row("nn.GRU LM step", "infer", _step_lm("gru", steps), None, devices=("cpu", "cuda"), steps=steps)]


ROWS: list[Row] = train_rows() + scan_rows() + infer_rows()

# Headline speed-ups printed per length: (slower row, faster row).
SPEEDUPS = [("nn.GRU", "minGRU fused"), ("nn.LSTM", "minLSTM fused"), ("GRU loop", "minGRU fused"),
            ("LSTM loop", "minLSTM fused"), ("peer minGRU", "minGRU fused"), ("peer minLSTM", "minLSTM fused"),
            ("minGRU fused mm", "minGRU fused"), ("minLSTM fused mm", "minLSTM fused"),
            # ceilings: the speed-up a layer would have if it cost only its matmuls, and how far the layer is off
            ("nn.GRU", "matmul floor 2H"), ("nn.LSTM", "matmul floor 3H"), ("peer minGRU", "matmul floor 2H"),
            ("minGRU fused", "matmul floor 2H"), ("minLSTM fused", "matmul floor 3H")]

# The CUDA section (the Triton kernels, `gpu.py`) adds its rows and headline pairs.
from .gpu import CUDA_SPEEDUPS, cuda_rows  # noqa: E402

ROWS += cuda_rows()
SPEEDUPS += CUDA_SPEEDUPS
