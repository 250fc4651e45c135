"""Before/after: the same `minrnn bench` cases run on two checkouts of minrnn, alternating, in one job.

    python bench/compare_trees.py --before /tmp/before --after . --rounds 3 --out bench/out/compare

Each round runs the bench once per tree (before, then after) in a subprocess with PYTHONPATH pointing at that
tree, so the two versions never share a process but do share the machine's passing load; every case's timed
calls are pooled over the rounds and the median is reported. Prints a table of both trees' medians and their
ratio per (row, threads) and writes it as JSON (`--out`/compare.json).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

DEFAULT_ROWS = ("minGRU fused,minLSTM fused,minGRU fused mm,minLSTM fused mm,nn.GRU,nn.LSTM,peer minGRU,"
                "peer minLSTM,matmul floor*")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="checkout of the old version (its folder holds minrnn/)")
    p.add_argument("--after", default=".", help="checkout of the new version")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--rows", default=DEFAULT_ROWS, help="--rows of minrnn bench")
    p.add_argument("--lengths", default="512", help="--lengths of minrnn bench")
    p.add_argument("--threads", default="1,2", help="--thread-sweep of minrnn bench")
    p.add_argument("--groups", default="train", help="--groups of minrnn bench")
    p.add_argument("--repeats", default="3", help="--repeats of minrnn bench per round")
    p.add_argument("--out", default="bench/out/compare", help="folder for the per-run JSONs and compare.json")
    a = p.parse_args(argv)
    trees = {"before": Path(a.before).resolve(), "after": Path(a.after).resolve()}
    for name, t in trees.items():
        if not (t / "minrnn" / "__init__.py").is_file():
            p.error(f"--{name}: expected a checkout with minrnn/__init__.py, got {t}")
    out = Path(a.out)
    times: dict[tuple, dict[str, list]] = {}
    for rnd in range(a.rounds):
        for name, tree in trees.items():
            run_dir = out / name / f"round{rnd}"
            env = dict(os.environ, PYTHONPATH=str(tree), OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
            cmd = [sys.executable, "-m", "minrnn.cli", "bench", "--groups", a.groups, "--lengths", a.lengths,
                   "--thread-sweep", a.threads, "--rows", a.rows, "--repeats", a.repeats, "--min-repeats", "2",
                   "--no-plot", "--no-progress", "--out", str(run_dir), "--tag", "r"]
            print(f"round {rnd + 1}/{a.rounds}: {name} ({tree})", flush=True)
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stdout[-2000:], r.stderr[-4000:], file=sys.stderr)
                return 1
            res = json.loads((run_dir / "bench_r.json").read_text())
            for e in res["results"]:
                if "@" not in e["row"]:
                    continue  # the bare-name entries repeat the fastest count
                key = (e["row"], e["size"])
                times.setdefault(key, {}).setdefault(name, []).extend(e.get("times_ms") or [e["median_ms"]])
    rows = []
    print(f"\n{'row':34s} {'T':>5s} {'before ms':>10s} {'after ms':>10s} {'after/before':>12s}")
    for (row, size), by in times.items():
        med = {k: statistics.median(v) for k, v in by.items()}
        ratio = med["after"] / med["before"] if "after" in med and "before" in med else None
        rows.append({"row": row, "size": size, **{f"{k}_median_ms": v for k, v in med.items()},
                     **{f"{k}_calls": len(v) for k, v in by.items()}, "after_over_before": ratio})
        shown = f"{ratio:12.3f}" if ratio is not None else f"{'-':>12s}"
        print(f"{row:34s} {size:5d} {med.get('before', float('nan')):10.2f} {med.get('after', float('nan')):10.2f} "
              f"{shown}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()},
                                                  "rounds": a.rounds, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out / 'compare.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
