"""`minrnn plot RUN_DIR... --out PNG`: loss curves of several runs on one figure, against optimiser steps
(left) and training seconds (right; evaluation time excluded), from each run's metrics.jsonl."""
from __future__ import annotations

import io
import json
from pathlib import Path


def _label(run_dir: Path) -> str:
    cfg = run_dir / "config.json"
    if cfg.is_file():
        c = json.loads(cfg.read_text())
        return f"{c['task_config'].get('model', '?')} ({c.get('params', 0) / 1e6:.2f}M)"
    return run_dir.name


def plot_runs(run_dirs: list[str], out: str, metric: str = "", train_curve: bool = True, title: str = "") -> Path:
    """Draw `metric` (default: the first `*_loss` of the eval records) and the train loss; returns the PNG."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("minrnn plot needs matplotlib: pip install 'minrnn[plot]'") from e
    from minrnn.checkpoint import atomic_write_bytes, read_metrics
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    runs = []
    for rd in run_dirs:
        recs = read_metrics(rd)
        evals = [r for r in recs if r["kind"] == "eval"]
        runs.append((rd, recs, evals, metric or next((k for r in evals for k in r if k.endswith("_loss")), "")))
    keys = sorted({key for *_, key in runs if key})
    is_loss = all(k.endswith("_loss") for k in keys)
    # a non-loss metric (accuracy, score) gets its own axis; the train loss then goes on a twin axis
    loss_axes = axes if is_loss or not train_curve else [ax.twinx() for ax in axes]
    for i, (rd, recs, evals, key) in enumerate(runs):
        color = f"C{i % 10}"
        for ax, lax, x in zip(axes, loss_axes, ("step", "time")):
            if train_curve:
                tr = [r for r in recs if r["kind"] == "train"]
                lax.plot([r[x] for r in tr], [r["loss"] for r in tr], color=color, alpha=0.3, lw=1)
            ev = [r for r in evals if key in r]
            if not ev and not train_curve:
                raise ValueError(f"{rd}: expected eval records with {key!r}, found none")
            ax.plot([r[x] for r in ev], [r[key] for r in ev], color=color, marker="o", ms=3,
                    label=f"{_label(Path(rd))} {key}")
    for ax, lax, xl in zip(axes, loss_axes, ("optimiser step", "training time (s)")):
        ax.set_xlabel(xl)
        ax.set_ylabel("loss (nats)" if is_loss else ", ".join(keys) or "value")
        if lax is not ax:
            lax.set_ylabel("train loss (nats, faint)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title or "faint: train loss, markers: evaluation")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)


def run(args) -> int:
    p = plot_runs(args.run_dirs, args.out, args.metric, not args.no_train, args.title)
    print(f"wrote {p}")
    return 0


def register(sub) -> None:
    s = sub.add_parser("plot", help="loss curves of training runs (vs step and vs seconds) to a PNG")
    s.add_argument("run_dirs", nargs="+", help="run directories written by `minrnn train`")
    s.add_argument("--out", default="curves.png", help="PNG to write")
    s.add_argument("--metric", default="", help="eval metric to draw (default: the first *_loss)")
    s.add_argument("--no-train", action="store_true", help="leave out the (faint) train-loss curves")
    s.add_argument("--title", default="", help="figure title")
    s.set_defaults(func=run)
