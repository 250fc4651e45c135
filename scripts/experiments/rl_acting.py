"""Acting cost per environment step of the Decision models (model only, no env): side by side, one run.

  python scripts/experiments/rl_acting.py [--steps 300] [--contexts 20,100] [--batch 1] [--out runs/rl_acting.json]

For each context K: Decision-minGRU / -minLSTM acting with a carried state (O(1) per step; "carried" is the
default `Actor`, which uses the C step of `models.fast_step` up to FAST_MAX_BATCH environments, and
"carried-pt" always the PyTorch forward) and re-running the
last K steps (window), and DT re-running its last K steps (as DT does). Untrained DT-recipe-sized models
(d 128, 3 layers, 1 head; the cost does not depend on the weights), Hopper dims, fp32, 1 thread. Rounds are
interleaved (every variant once per round, 5 rounds) and the median round is reported, so machine noise hits
all variants alike; ratios are to DT at the same K.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from minrnn.tasks.rl.models import Actor, DecisionModel  # noqa: E402


def time_acting(model, mode: str, steps: int, batch: int) -> float:
    """Milliseconds per env step of Actor.act + observe_action over `steps` steps from t = 0."""
    actor = Actor(model, batch, "carried" if mode == "carried-pt" else mode, fast=mode != "carried-pt")
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(steps, batch, model.obs_dim, generator=g)
    t0 = time.perf_counter()
    for t in range(steps):
        a = actor.act(torch.full((batch,), 3.6), obs[t], torch.full((batch,), t))
        actor.observe_action(a)
    return 1e3 * (time.perf_counter() - t0) / steps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--contexts", default="20,100")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default="runs/rl_acting.json")
    a = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for K in (int(k) for k in a.contexts.split(",")):
        torch.manual_seed(0)
        models = {arch: DecisionModel(arch, 11, 3, context=K, d_model=128, n_layers=3, n_heads=1, conv_kernel=0,
                                      dropout=0.1).eval() for arch in ("mingru", "minlstm", "transformer")}
        variants = [("mingru", "carried"), ("mingru", "carried-pt"), ("mingru", "window"), ("minlstm", "carried"),
                    ("minlstm", "carried-pt"), ("transformer", "window")]
        times = {v: [] for v in variants}
        for _ in range(a.rounds):
            for arch, mode in variants:
                times[(arch, mode)].append(time_acting(models[arch], mode, a.steps, a.batch))
        dt = statistics.median(times[("transformer", "window")])
        for (arch, mode), ts in times.items():
            ms = statistics.median(ts)
            rows.append(dict(context=K, model="dt" if arch == "transformer" else arch, mode=mode, ms_per_step=ms,
                             model_steps_per_s=1e3 / ms, cost_vs_dt=ms / dt))
            print(f"K={K:4d} {rows[-1]['model']:8s} {mode:10s} {ms:7.3f} ms/step  {1e3 / ms:8.1f} steps/s  "
                  f"{ms / dt:5.2f}x DT's cost")
    out = dict(rows=rows, steps=a.steps, batch=a.batch, rounds=a.rounds, torch=torch.__version__,
               machine=platform.processor() or platform.machine(), threads=1,
               omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", ""))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out + ".tmp"
    Path(tmp).write_text(json.dumps(out, indent=1))
    os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
