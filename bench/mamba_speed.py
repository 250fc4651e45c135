"""Training-step time of the selective-copy cpu-preset models, minGRU vs Mamba (mambapy), side by side in one
run on one thread: `python bench/mamba_speed.py [--batch 32] [--T 48] [--iters 10]`. Prints a table and
writes --out JSON (default: none). Forward + backward + AdamW step, after 3 warm-up steps."""
from __future__ import annotations

import argparse
import json
import time

import torch

from minrnn.models.baselines import count_params, make_model
from minrnn.tasks.selective_copy import MAMBA_CPU_MODEL, PAPER_MODEL


def step_s(model, x, iters: int) -> float:
    opt = torch.optim.AdamW(model.parameters())
    for i in range(iters + 3):
        if i == 3:
            t = time.perf_counter()
        out, _ = model(x)
        loss = out.float().logsumexp(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / iters


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--T", type=int, default=48)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randint(0, 16, (a.batch, a.T))  # the task's 16 symbols; T 48 = 32 data + 16 markers
    rows = []
    for name, kw in (("mingru", PAPER_MODEL), ("mamba", MAMBA_CPU_MODEL)):
        m = make_model(name, vocab_size=16, **kw)
        rows.append({"model": name, "params": count_params(m), "step_s": step_s(m, x, a.iters)})
    base = rows[0]["step_s"]
    print(f"batch {a.batch} x T {a.T}, 1 thread, torch {torch.__version__}")
    print(f"{'model':8s} {'params':>9s} {'s/step':>8s} {'x minGRU':>9s}")
    for r in rows:
        r["ratio"] = r["step_s"] / base
        print(f"{r['model']:8s} {r['params']:9,d} {r['step_s']:8.3f} {r['ratio']:9.1f}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"batch": a.batch, "T": a.T, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
