"""`minrnn plot RUN_DIR... [--out PNG]`: loss curves of several runs on one figure, against optimiser steps
(left) and training seconds (right; evaluation time excluded), from each run's metrics.jsonl. The PNG goes to
the first RUN_DIR (curves.png) unless --out says otherwise; each curve is labelled `run: model (params)`."""
from __future__ import annotations

import io
import json
from pathlib import Path


def _model(run_dir: Path) -> str:
    cfg = run_dir / "config.json"
    if cfg.is_file():
        c = json.loads(cfg.read_text())
        return f"{c['task_config'].get('model', '?')} ({c.get('params', 0) / 1e6:.2f}M)"
    return ""


def labels(run_dirs: list[str]) -> list[str]:
    """One distinct legend label per run: `name: model (params)`, the name being the run directory's name, or
    the path as given where two runs share a name (a run given twice gets ' #2', ...)."""
    names = [Path(rd).name or str(rd) for rd in run_dirs]
    names = [str(rd) if names.count(n) > 1 else n for n, rd in zip(names, run_dirs)]
    out, seen = [], {}
    for n, rd in zip(names, run_dirs):
        seen[n] = seen.get(n, 0) + 1
        m = _model(Path(rd))
        out.append(f"{n}{f' #{seen[n]}' if seen[n] > 1 else ''}" + (f": {m}" if m else ""))
    return out


def default_out(run_dirs: list[str]) -> Path:
    return Path(run_dirs[0]) / "curves.png"


def plot_runs(run_dirs: list[str], out: str | None = None, metric: str = "", train_curve: bool = True,
              title: str = "") -> Path:
    """Draw `metric` (default: the first `*_loss` of the eval records) and the train loss; returns the PNG
    (`out`, default RUN_DIR/curves.png of the first run)."""
    from minrnn.extras import require
    require("matplotlib", "plot", "minrnn plot", package="matplotlib").use("Agg")
    plt = require("matplotlib.pyplot", "plot", "minrnn plot", package="matplotlib")
    from minrnn.checkpoint import atomic_write_bytes, read_metrics
    if not run_dirs:
        raise ValueError("run directories: expected at least one, got none")
    out = Path(out) if out else default_out(run_dirs)
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
    names = labels(run_dirs)
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
                    label=f"{names[i]} {key}")
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
    s.add_argument("--out", default=None, help="PNG to write (default: curves.png in the first RUN_DIR)")
    s.add_argument("--metric", default="", help="eval metric to draw (default: the first *_loss)")
    s.add_argument("--no-train", action="store_true", help="leave out the (faint) train-loss curves")
    s.add_argument("--title", default="", help="figure title")
    s.set_defaults(func=run)
