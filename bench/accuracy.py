"""Accuracy of every scan implementation against the fp64 sequential reference.

Prints, per implementation, dtype and T, the max error of the states and of each gradient as a fraction of the
reference's max magnitude (the figures quoted in README.md's tolerance table), and writes JSON.
Usage: python bench/accuracy.py [--out bench/out/accuracy.json]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile

import torch

from minrnn.scan import available_impls, linear_scan
from minrnn.scan.reference import scan_reference


def inputs(T, seed, B=2, D=37):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(B, T, D, generator=g, dtype=torch.float64) * 0.98 + 0.01
    b = torch.rand(B, T, D, generator=g, dtype=torch.float64) + 0.01  # positive: valid for logspace too
    h0 = torch.rand(B, D, generator=g, dtype=torch.float64) + 0.01
    w = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    return a, b, h0, w


def errors(impl, dtype, T, seed):
    a, b, h0, w = inputs(T, seed)
    ref_in = [t.clone().requires_grad_() for t in (a, b, h0)]
    h_ref = scan_reference(*ref_in)
    g_ref = torch.autograd.grad((h_ref * w).sum() + h_ref[:, -1].sum(), ref_in)
    x_in = [t.to(dtype).requires_grad_() for t in (a, b, h0)]
    h, h_n = linear_scan(*x_in, impl=impl)
    grads = torch.autograd.grad((h * w.to(dtype)).sum() + h_n.sum(), x_in) if dtype != torch.bfloat16 else None
    rel = lambda got, ref: ((got.double() - ref).abs().max() / ref.abs().max()).item()  # noqa: E731
    out = {"h": rel(h, h_ref)}
    if grads is not None:
        out.update({n: rel(g_, r_) for n, g_, r_ in zip(("da", "db", "dh0"), grads, g_ref)})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/out/accuracy.json")
    p.add_argument("--lengths", default="63,1000,4096")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'impl':<10}{'dtype':<10}{'T':>6}  {'h':>9}{'da':>9}{'db':>9}{'dh0':>9}   (max err / max |ref|, 2 seeds)")
    for impl in [i for i in available_impls() if i != "reference"]:
        for dtype in (torch.float32, torch.bfloat16):
            if dtype == torch.bfloat16 and impl == "logspace":
                continue
            for T in map(int, args.lengths.split(",")):
                e = [errors(impl, dtype, T, s) for s in (0, 1)]
                worst = {k: max(x[k] for x in e) for k in e[0]}
                rows.append({"impl": impl, "dtype": str(dtype), "T": T, **worst})
                cells = "".join(f"{worst[k]:9.1e}" if k in worst else f"{'-':>9}" for k in ("h", "da", "db", "dh0"))
                print(f"{impl:<10}{str(dtype).replace('torch.', ''):<10}{T:>6}  {cells}", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(args.out) or ".", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({"torch": torch.__version__, "rows": rows}, f, indent=1)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
