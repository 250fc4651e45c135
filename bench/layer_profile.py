"""Where one minGRU/minLSTM layer's training step goes on the CPU (B = 64, D = H = 128 by default, fp32).

For each cell: the median step time (forward + backward of y.sum(), x needs no grad, as `minrnn bench` times it)
with the layer's matmuls inside the kernels and by torch.mm around them (the layer's `cpu_matmul`), interleaved step by
step so both see the same machine; then torch.profiler's self CPU time per op for each route (the autograd
nodes FusedLinearCellFn / ...Backward hold the kernels; with torch.mm the GEMMs show as aten::mm).

The split inside the kernels (GEMM tiles vs gate math + scan) needs a sampling profiler, e.g.
    perf record -o /tmp/layer.perf python bench/layer_profile.py --cells minlstm --routes auto --no-profiler
    perf report -i /tmp/layer.perf --sort sym     # gemm_f32*, bwd_1*_f32, fwd_1*_f32, pack_f32, stream_row_f32

Usage: OMP_WAIT_POLICY=PASSIVE python bench/layer_profile.py [--cells mingru,minlstm] [--T 512] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minrnn.layers import MinGRU, MinLSTM  # noqa: E402

ROUTES = ("auto", "off")  # matmuls inside the kernels (fp32 + AVX2/FMA), torch.mm around them


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default="mingru,minlstm", help="comma-separated: mingru, minlstm")
    ap.add_argument("--T", type=int, default=512, help="sequence length")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=128, help="D = H")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per route")
    ap.add_argument("--routes", default="auto,off", help="where the matmuls run: auto (in the kernels), off (mm)")
    ap.add_argument("--no-profiler", action="store_true", help="time only (e.g. under perf)")
    a = ap.parse_args()
    cells = [c.strip() for c in a.cells.split(",") if c.strip()]
    routes = [r.strip() for r in a.routes.split(",") if r.strip()]
    bad = [c for c in cells if c not in ("mingru", "minlstm")] + [r for r in routes if r not in ROUTES]
    if bad or not routes or a.T < 1 or a.batch < 1 or a.width < 1 or a.threads < 1 or a.steps < 1:
        ap.error(f"expected cells in mingru,minlstm, routes in auto,off and positive sizes, got cells={a.cells!r}, "
                 f"routes={a.routes!r}, T={a.T}, "
                 f"batch={a.batch}, width={a.width}, threads={a.threads}, steps={a.steps}")
    torch.set_num_threads(a.threads)
    print(f"B={a.batch} T={a.T} D=H={a.width} fp32, {a.threads} thread(s), torch {torch.__version__}")
    for cell in cells:
        torch.manual_seed(0)
        m = (MinGRU if cell == "mingru" else MinLSTM)(a.width, a.width, scan_impl="cpu")
        x = torch.randn(a.batch, a.T, a.width)

        def step():
            for p in m.parameters():
                p.grad = None
            m(x)[0].sum().backward()

        times = {r: [] for r in routes}
        for r in routes:  # warm-up
            m.cpu_matmul = r
            step()
            step()
        for _ in range(a.steps):
            for r in routes:
                m.cpu_matmul = r
                t0 = time.perf_counter()
                step()
                times[r].append((time.perf_counter() - t0) * 1e3)
        med = {r: statistics.median(v) for r, v in times.items()}
        names = {"auto": "with the matmuls in the kernels", "off": "with torch.mm"}
        print(f"\n{cell}: median step " + ", ".join(f"{med[r]:.1f} ms {names[r]}" for r in routes)
              + (f" ({med['off'] / med['auto']:.2f}x)" if len(routes) == 2 else "")
              + f", {a.steps} interleaved steps each")
        if a.no_profiler:
            continue
        from torch.profiler import ProfilerActivity, profile
        for r in routes:
            m.cpu_matmul = r
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(5):
                    step()
            rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
            total = sum(e.self_cpu_time_total for e in rows) / 5 / 1e3
            print(f"  route {r!r}: self CPU time per step (ms), ops over 2% of {total:.1f} ms")
            for e in rows:
                ms = e.self_cpu_time_total / 5 / 1e3
                if ms >= 0.02 * total:
                    print(f"    {e.key[:48]:48s} {ms:8.2f}  ({e.count // 5} call(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
