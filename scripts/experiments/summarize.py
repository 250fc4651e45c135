"""Tables and plots of selective-copy / Chomsky runs from their run directories.

  python scripts/experiments/summarize.py table RUN_DIR... [--split test]
      one markdown row per (task/problem, model, layers): accuracy mean +- std over the runs (seeds),
      from RUN_DIR/eval_<split>.json (written by `minrnn eval RUN_DIR --split <split>`, see the .sh
      scripts), with steps and training seconds from summary.json
  python scripts/experiments/summarize.py plot RUN_DIR... --out acc.png [--metric val_acc]
      accuracy vs training time (evaluation excluded), one line per run, one colour per layer count
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def load(run_dir: str, split: str) -> dict:
    rd = Path(run_dir)
    cfg = json.loads((rd / "config.json").read_text())
    summ = json.loads((rd / "summary.json").read_text()) if (rd / "summary.json").is_file() else {}
    ev_path = rd / f"eval_{split}.json"
    ev = json.loads(ev_path.read_text().strip().splitlines()[-1]) if ev_path.is_file() else {}
    tc = cfg["task_config"]
    name = cfg["task"] + (f"/{tc['problem']}" if "problem" in tc else "")
    return {"task": name, "model": tc["model"], "layers": tc["n_layers"], "seed": cfg["train_config"]["seed"],
            "acc": ev.get("acc"), "steps": summ.get("steps"), "time": summ.get("train_time"), "dir": rd.name,
            "val": summ.get("best_val_acc")}


def table(run_dirs: list[str], split: str) -> str:
    rows: dict = {}
    for rd in run_dirs:
        r = load(rd, split)
        rows.setdefault((r["task"], r["model"], r["layers"]), []).append(r)
    out = [f"| task | model | layers | runs | {split} acc (%) | best val acc (%) | steps | train min |",
           "|---|---|---|---|---|---|---|---|"]
    for (task, model, layers), rs in sorted(rows.items()):
        accs = [100 * r["acc"] for r in rs if r["acc"] is not None]
        vals = [100 * r["val"] for r in rs if r["val"] is not None]
        steps = "/".join(str(r["steps"]) for r in rs)
        mins = "/".join(f"{r['time'] / 60:.1f}" for r in rs if r["time"] is not None)
        out.append(f"| {task} | {model} | {layers} | {len(rs)} | {fmt(accs)} | {fmt(vals)} | {steps} | {mins} |")
    return "\n".join(out)


def fmt(xs: list[float]) -> str:
    if not xs:
        return "not measured"
    if len(xs) == 1:
        return f"{xs[0]:.1f}"
    return f"{statistics.mean(xs):.1f} +- {statistics.stdev(xs):.1f}"


def plot(run_dirs: list[str], out: str, metric: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise SystemExit("plotting needs matplotlib: pip install 'minrnn[plot]'") from e
    from minrnn.checkpoint import atomic_write_bytes, read_metrics
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for rd in run_dirs:
        r = load(rd, "test")
        ev = [m for m in read_metrics(rd) if m["kind"] == "eval" and metric in m]
        ax.plot([m["time"] / 60 for m in ev], [100 * m[metric] for m in ev], marker="o", ms=2,
                color=f"C{r['layers'] - 1}", label=f"{r['model']} {r['layers']} layer(s), seed {r['seed']}")
    ax.set_xlabel("training time (minutes, evaluation excluded)")
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table")
    t.add_argument("run_dirs", nargs="+")
    t.add_argument("--split", default="test")
    g = sub.add_parser("plot")
    g.add_argument("run_dirs", nargs="+")
    g.add_argument("--out", required=True)
    g.add_argument("--metric", default="val_acc")
    a = p.parse_args()
    if a.cmd == "table":
        print(table(a.run_dirs, a.split))
    else:
        plot(a.run_dirs, a.out, a.metric)


if __name__ == "__main__":
    main()
