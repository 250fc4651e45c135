"""CUDA benchmark of the Triton kernels: bandwidth against the device's copy bandwidth, training speed
against cuDNN `nn.GRU`/`nn.LSTM` and the sequential loop, peers, and a small launch-config sweep.

Run `python -m minrnn.bench.gpu --out bench/out/gpu_bench.json` (or `bench/gpu_check.sh`, which also runs
the GPU tests). Every figure is a median of CUDA-event timings after warm-up; ratios come from one run.
  bandwidth  bytes the scan must move / time; forward reads k (n_gates*H per step) and writes h (H),
             backward reads k, h, dL/dh and writes dk. Compared with a device-to-device copy (read+write).
  training   one layer, forward + backward of sum(y), B=64, width D -> D, T=64..4096, fp32 with TF32
             matmuls everywhere (cuDNN's default), minGRU/minLSTM (triton) vs nn.GRU/nn.LSTM (cuDNN)
             vs a Python loop over nn.GRUCell/nn.LSTMCell (the paper's "sequential" baseline).
  peers      the plain scan h = a h + b against accelerated-scan and flash-linear-attention's HGRN, when
             importable (install them beside ours; skipped with the reason otherwise).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

from ..layers import MinGRU, MinLSTM
from ..scan.triton_scan import cell_scan_triton, scan_triton


def timeit(fn, warmup: int = 3, iters: int = 10) -> float:
    """Median milliseconds of fn() over `iters` runs, each timed with CUDA events (a wall clock on CPU,
    which only the smoke test uses)."""
    for _ in range(warmup):
        fn()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        if not cuda:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def copy_bandwidth(nbytes: int = 2 << 30, device="cuda") -> float:
    """GB/s of a device-to-device copy, counting bytes read plus bytes written."""
    x = torch.empty(nbytes // 4, device=device)
    y = torch.empty_like(x)
    ms = timeit(lambda: y.copy_(x), warmup=3, iters=20)
    return 2 * nbytes / ms / 1e6


def scan_bandwidth(cell: str, B: int, T: int, H: int, dtype, copy_gbps: float, device="cuda", **cfg) -> dict:
    G = 2 if cell == "mingru" else 3
    k = torch.randn(B, T, G * H, device=device, dtype=dtype).requires_grad_()
    kw = dict(candidate="g", normalize=cell == "minlstm", **cfg)
    with torch.no_grad():
        fwd = timeit(lambda: cell_scan_triton(cell, k, None, **kw))
    h = cell_scan_triton(cell, k, None, **kw)
    gh = torch.randn_like(h)
    bwd = timeit(lambda: torch.autograd.grad(h, k, gh, retain_graph=True))
    es = k.element_size()
    fwd_bytes, bwd_bytes = (k.numel() + h.numel()) * es, 2 * (k.numel() + h.numel()) * es
    row = dict(cell=cell, B=B, T=T, H=H, dtype=str(dtype).replace("torch.", ""), cfg=cfg,
               fwd_ms=fwd, bwd_ms=bwd, fwd_gbps=fwd_bytes / fwd / 1e6, bwd_gbps=bwd_bytes / bwd / 1e6)
    row["fwd_frac_of_copy"] = row["fwd_gbps"] / copy_gbps
    row["bwd_frac_of_copy"] = row["bwd_gbps"] / copy_gbps
    del k, h, gh
    torch.cuda.empty_cache()
    return row


class SeqLoop(torch.nn.Module):
    """The sequential baseline: a Python loop over nn.GRUCell / nn.LSTMCell, one step at a time."""

    def __init__(self, kind: str, D: int):
        super().__init__()
        self.kind = kind
        self.cell = (torch.nn.GRUCell if kind == "gru" else torch.nn.LSTMCell)(D, D)

    def forward(self, x):
        B, T, D = x.shape
        h = x.new_zeros(B, D)
        state = h if self.kind == "gru" else (h, h)
        out = []
        for t in range(T):
            state = self.cell(x[:, t], state)
            out.append(state if self.kind == "gru" else state[0])
        return torch.stack(out, 1), state


def train_ms(model, x, iters: int) -> float:
    def step():
        y, _ = model(x)
        y.sum().backward()
    return timeit(step, warmup=1 if iters < 5 else 3, iters=iters)


def training_speed(Ts, widths, B: int = 64, seq_max_T: int = 4096, device="cuda") -> list[dict]:
    rows = []
    for kind in ("gru", "lstm"):
        for D in widths:
            ours = (MinGRU if kind == "gru" else MinLSTM)(D, D, scan_impl="triton").to(device)
            cudnn = (torch.nn.GRU if kind == "gru" else torch.nn.LSTM)(D, D, batch_first=True).to(device)
            seq = SeqLoop(kind, D).to(device)
            for T in Ts:
                x = torch.randn(B, T, D, device=device)
                row = dict(cell=kind, B=B, D=D, T=T, minrnn_ms=train_ms(ours, x, 10),
                           cudnn_ms=train_ms(cudnn, x, 10))
                row["speedup_vs_cudnn"] = row["cudnn_ms"] / row["minrnn_ms"]
                if T <= seq_max_T:
                    row["sequential_ms"] = train_ms(seq, x, 3 if T <= 512 else 2)
                    row["speedup_vs_sequential"] = row["sequential_ms"] / row["minrnn_ms"]
                rows.append(row)
                print(_fmt(row), flush=True)
    return rows


def peers(B: int, D: int, T: int, copy_gbps: float, device="cuda") -> list[dict]:
    """fwd and fwd+bwd ms of the plain scan (fp32) on one shape, ours and the peers' kernels."""
    a = torch.rand(B, T, D, device=device) * 0.5 + 0.5
    b = torch.randn(B, T, D, device=device)
    same, flip = (lambda y: y), (lambda y: y.transpose(1, 2))  # outputs back to (B, T, D)
    cands = {"minrnn.triton": (lambda a_, b_: scan_triton(a_, b_), a, b, same)}
    errors = {}
    try:
        from accelerated_scan.scalar import scan as acc_scan  # triton version, (B, C, T) layout
        at, bt = a.transpose(1, 2).contiguous(), b.transpose(1, 2).contiguous()
        cands["accelerated_scan.scalar"] = (acc_scan, at, bt, flip)
        if os.environ.get("MINRNN_BENCH_WARP") == "1":  # CUDA C++ version, compiled at import (~1 min)
            from accelerated_scan.warp import scan as warp_scan
            cands["accelerated_scan.warp"] = (warp_scan, at, bt, flip)
    except Exception as e:  # not installed, or it failed to build: recorded, not fatal
        errors["accelerated_scan"] = f"{type(e).__name__}: {e}"
    try:
        from fla.ops.hgrn import chunk_hgrn, fused_recurrent_hgrn  # h = exp(g) h + x, (B, T, D)
        cands["fla.chunk_hgrn"] = (lambda g, x: chunk_hgrn(x, g)[0], a.log(), b, same)
        cands["fla.fused_recurrent_hgrn"] = (lambda g, x: fused_recurrent_hgrn(x, g)[0], a.log(), b, same)
    except Exception as e:
        errors["fla"] = f"{type(e).__name__}: {e}"
    rows = []
    with torch.no_grad():
        ours = scan_triton(a, b)
    for name, (fn, x1, x2, to_btd) in cands.items():
        try:
            with torch.no_grad():
                fwd = timeit(lambda: fn(x1, x2))
                diff = (to_btd(fn(x1, x2)).float() - ours).abs().max().item()  # same problem solved?
            p1, p2 = x1.detach().requires_grad_(), x2.detach().requires_grad_()
            both = timeit(lambda: torch.autograd.grad(fn(p1, p2).sum(), (p1, p2)))
            gb = 3 * a.numel() * 4 / 1e9  # the minimum a forward moves: read a, b, write h
            rows.append(dict(impl=name, B=B, D=D, T=T, fwd_ms=fwd, fwd_bwd_ms=both, max_abs_diff_vs_ours=diff,
                             fwd_frac_of_copy=gb / fwd * 1e3 / copy_gbps))
        except Exception as e:
            errors[name] = f"{type(e).__name__}: {e}"
    for r in rows:
        print(_fmt(r), flush=True)
    return [dict(errors=errors)] + rows


def sweep(cell: str, B: int, T: int, H: int, copy_gbps: float, tiles: bool = True) -> list[dict]:
    """Launch configurations on one shape: time chunks (n_chunks), load pipelining, tile sizes and warps."""
    rows = []
    for n in (1, 2, 4, 8, 32, 128):
        rows.append(scan_bandwidth(cell, B, T, H, torch.float32, copy_gbps, n_chunks=n))
        print(_fmt(rows[-1]), flush=True)
    for st, bst in ((1, 1), (3, 2)) if tiles else ():  # load pipelining depth, forward and backward
        rows.append(scan_bandwidth(cell, B, T, H, torch.float32, copy_gbps, stages=st, bwd_stages=bst))
        print(_fmt(rows[-1]), flush=True)
    configs = [(16, 64, 4), (32, 64, 8), (16, 128, 8), (32, 32, 4), (8, 128, 4), (16, 32, 2), (32, 64, 4)]
    for bt, bh, warps in configs if tiles else ():
        try:
            r = scan_bandwidth(cell, B, T, H, torch.float32, copy_gbps, block_t=bt, block_h=bh, num_warps=warps)
        except Exception as e:  # a config that fails to compile or launch is recorded
            r = dict(cfg=dict(block_t=bt, block_h=bh, num_warps=warps), error=f"{type(e).__name__}: {e}")
        rows.append(r)
        print(_fmt(r), flush=True)
    return rows


# ---- the CUDA section of `minrnn bench --device cuda` (rows appended to `rows.ROWS`) ----
CUDA_SPEEDUPS = [("nn.GRU", "minGRU triton"), ("nn.LSTM", "minLSTM triton"), ("GRU loop", "minGRU triton"),
                 ("LSTM loop", "minLSTM triton")]


def _need_triton() -> str | None:
    from ..scan import triton_unavailable_reason
    return triton_unavailable_reason("cuda")


def _cell_row(backward: bool):
    """The fused minGRU cell scan on k (B, T, 2D): the same bytes as the add floor (read 2, write 1)."""
    def make(cfg, T):
        g = torch.Generator().manual_seed(2)
        k = torch.randn(cfg.batch, T, 2 * cfg.width, generator=g).to(cfg.device, getattr(torch, cfg.dtype))
        k.requires_grad_(backward)
        if not backward:
            return lambda: torch.no_grad()(cell_scan_triton)("mingru", k, None, candidate="g", normalize=False)
        gh = torch.ones(cfg.batch, T, cfg.width, device=k.device, dtype=k.dtype)
        return lambda: torch.autograd.grad(cell_scan_triton("mingru", k, None, candidate="g", normalize=False),
                                           k, gh)
    return make


def cuda_rows() -> list:
    """Rows of `minrnn bench` that run only on CUDA: the Triton layers, scan and fused cell."""
    from .rows import Row, _min, _scan, _train
    cuda = ("cuda",)
    return [Row("minGRU triton", "train", _train(_min("minGRU", "triton")), "nn.GRU", _need_triton, devices=cuda),
            Row("minLSTM triton", "train", _train(_min("minLSTM", "triton")), "nn.LSTM", _need_triton,
                devices=cuda),
            Row("triton fwd", "scan", _scan("triton", False), "add floor", _need_triton, devices=cuda),
            Row("triton fwd+bwd", "scan", _scan("triton", True), "add floor", _need_triton, devices=cuda),
            Row("minGRU cell triton fwd", "scan", _cell_row(False), "add floor", _need_triton, devices=cuda),
            Row("minGRU cell triton fwd+bwd", "scan", _cell_row(True), "add floor", _need_triton, devices=cuda)]


def _fmt(row: dict) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def environment() -> dict:
    import triton
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return dict(device=torch.cuda.get_device_name(0), torch=torch.__version__, triton=triton.__version__,
                cuda=torch.version.cuda, python=platform.python_version(), commit=commit,
                tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32,
                time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def write_json(path: str, obj) -> None:
    from pathlib import Path

    from .run import write_json as atomic_write  # temp file + os.replace
    atomic_write(obj, Path(path))


SECTIONS = ("bandwidth", "training", "peers", "sweep")


def targets(res: dict) -> dict:
    """Issue 7's targets, evaluated on this run's numbers (absent sections give None)."""
    t = {}
    big = [r for r in res.get("bandwidth", []) if (r["cell"], r["B"], r["T"], r["H"], r["dtype"]) ==
           ("mingru", 8, 65536, 1536, "float32")]
    if big:
        t["fwd_frac_of_copy"], t["bwd_frac_of_copy"] = big[0]["fwd_frac_of_copy"], big[0]["bwd_frac_of_copy"]
        t["bandwidth_ge_70pct"] = min(t["fwd_frac_of_copy"], t["bwd_frac_of_copy"]) >= 0.70
    gru = [r for r in res.get("training", []) if r["cell"] == "gru"]
    if gru:
        t["min_speedup_vs_cudnn_gru"] = min(r["speedup_vs_cudnn"] for r in gru)
        t["faster_than_cudnn_every_T"] = t["min_speedup_vs_cudnn_gru"] > 1.0
        t["speedup_vs_cudnn_gru_T4096"] = {r["D"]: r["speedup_vs_cudnn"] for r in gru if r["T"] == 4096}
        at4096 = t["speedup_vs_cudnn_gru_T4096"].values()
        t["ge_10x_cudnn_at_T4096"] = all(v >= 10 for v in at4096) if at4096 else None
        t["speedup_vs_sequential_gru_T512"] = {r["D"]: r.get("speedup_vs_sequential") for r in gru
                                               if r["T"] == 512}
        vals = [v for v in t["speedup_vs_sequential_gru_T512"].values() if v is not None]
        t["ge_175x_sequential_at_T512"] = (min(vals) >= 175) if vals else None
    return t


def run(out: str, sections=SECTIONS, quick: bool = False) -> dict:
    if not torch.cuda.is_available():
        raise RuntimeError("the GPU benchmark needs a CUDA device; torch.cuda.is_available() is False")
    torch.backends.cuda.matmul.allow_tf32 = True  # cuDNN's RNNs use TF32 by default: same for our matmuls
    torch.backends.cudnn.allow_tf32 = True
    res = dict(env=environment())
    res["copy_gbps"] = copy = copy_bandwidth()
    print(f"device-to-device copy: {copy:.1f} GB/s (read + write)", flush=True)
    write_json(out, res)
    if "bandwidth" in sections:
        shapes = [("mingru", 8, 65536, 1536, torch.float32), ("mingru", 8, 65536, 1536, torch.bfloat16),
                  ("minlstm", 8, 65536, 1536, torch.float32), ("mingru", 64, 4096, 1024, torch.float32),
                  ("mingru", 1, 65536, 1024, torch.float32), ("mingru", 64, 4096, 128, torch.float32)]
        res["bandwidth"] = []
        for cell, B, T, H, dt in shapes[:3] if quick else shapes:
            res["bandwidth"].append(scan_bandwidth(cell, B, T, H, dt, copy))
            print(_fmt(res["bandwidth"][-1]), flush=True)
            write_json(out, res)
    if "training" in sections:
        Ts = [64, 512, 4096] if quick else [64, 128, 256, 512, 1024, 2048, 4096]
        res["training"] = training_speed(Ts, [128, 1024])
        write_json(out, res)
    if "peers" in sections:
        res["peers"] = peers(8, 1536, 65536, copy)
        write_json(out, res)
    res["targets"] = targets(res)
    print("targets:", json.dumps(res["targets"]), flush=True)
    write_json(out, res)
    if "sweep" in sections and not quick:
        res["sweep"] = sweep("mingru", 8, 65536, 1536, copy) + sweep("mingru", 1, 65536, 1024, copy, tiles=False)
        write_json(out, res)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="CUDA benchmark of minrnn's Triton kernels (writes JSON)")
    p.add_argument("--out", default="bench/out/gpu_bench.json", help="JSON file to write (atomically)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    p.add_argument("--quick", action="store_true", help="fewer shapes and lengths (about a minute)")
    a = p.parse_args(argv)
    sections = [s for s in a.sections.split(",") if s]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise SystemExit(f"--sections: expected a subset of {SECTIONS}, got {bad}")
    run(a.out, sections, a.quick)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
