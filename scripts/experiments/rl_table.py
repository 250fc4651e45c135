"""Markdown table of offline-RL runs: `python scripts/experiments/rl_table.py RUNS_DIR`.

Reads RUN_DIR/eval_rl.json (and eval_rl_window.json) written by `minrnn rl eval` for every run directory under
RUNS_DIR, groups by (env, dataset, model, acting mode) and prints, per group: the number of training seeds,
the D4RL-normalised score as mean +- std over the training seeds (each seed's score is the mean over its
evaluation episodes) and the std over one run's episodes (averaged over runs), the raw return as mean +- std
over seeds, the evaluation episodes in total, env steps/s of acting and the
model's milliseconds per env step. Then the paper-style summary: one row per env-dataset, one column per model
in its own acting mode (minRNNs carried, DT window), and the average over the cells that every model has
(mean of the per-cell means; the std column of a cell is over its seeds), and the final validation action
MSE per cell and model (`summary.json`'s last evaluation). The paper's numbers (average over
D4RL's 9 datasets) are printed below.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

PAPER = "paper (D4RL v2, average of 9 datasets): Decision-minGRU 78.2, Decision-minLSTM 78.1, DT 76.4, " \
        "Decision Mamba 78.8, Decision S4 68.6"


def _own_mode(model: str) -> str:
    """How each model acts by default: DT re-runs its window, the minRNNs carry their state."""
    return "window" if model == "dt" else "carried"


def _ms(xs):
    return (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main(root: str) -> int:
    groups = defaultdict(list)
    for f in sorted(Path(root).glob("*/eval_rl*.json")):
        e = json.loads(f.read_text())
        cfg = json.loads((f.parent / "config.json").read_text())
        summ = f.parent / "summary.json"
        summary = json.loads(summ.read_text()) if summ.exists() else {}
        steps = summary.get("steps", e["step"])
        val = summary.get("last_eval", {}).get("val_loss")
        groups[(e["env"], e["dataset"], "dt" if e["model"] == "transformer" else e["model"], e["mode"])].append(
            dict(e, train_steps=steps, preset=cfg.get("preset"), val_loss=val))
    if not groups:
        print(f"no eval_rl*.json under {root}", file=sys.stderr)
        return 1
    print("| env-dataset | model | acting | seeds | train steps | score (mean +- std over seeds) | "
          "score std over episodes | return | episodes | env steps/s | model ms/step |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (env, ds, model, mode), rs in sorted(groups.items()):
        s, r = _ms([x["score_mean"] for x in rs]), _ms([x["return_mean"] for x in rs])
        print(f"| {env}-{ds} | {model} | {mode} | {len(rs)} | {rs[0]['train_steps']} | {s[0]:.1f} +- {s[1]:.1f} | "
              f"{statistics.mean(x['score_std'] for x in rs):.1f} | {r[0]:.0f} +- {r[1]:.0f} | {sum(x['episodes'] for x in rs)} | "
              f"{statistics.mean(x['steps_per_s'] for x in rs):.0f} | "
              f"{statistics.mean(x['model_ms_per_step'] for x in rs):.2f} |")
    own = {k: v for k, v in groups.items() if k[3] == _own_mode(k[2])}
    cells = sorted({(k[0], k[1]) for k in own})
    models = [m for m in ("mingru", "minlstm", "dt") if any(k[2] == m for k in own)]
    print("\n| env-dataset | " + " | ".join(f"{m} (seeds)" for m in models) + " |")
    print("|---|" + "---|" * len(models))
    full = []
    for env, ds in cells:
        row = []
        for m in models:
            rs = own.get((env, ds, m, _own_mode(m)))
            if rs is None:
                row.append("-")
                continue
            mu, sd = _ms([x["score_mean"] for x in rs])
            row.append(f"{mu:.1f} +- {sd:.1f} ({len(rs)})")
        if "-" not in row:
            full.append((env, ds))
        print(f"| {env}-{ds} | " + " | ".join(row) + " |")
    if full:
        avg = [statistics.mean(_ms([x["score_mean"] for x in own[(env, ds, m, _own_mode(m))]])[0]
                               for env, ds in full) for m in models]
        print(f"| average of {len(full)} cells | " + " | ".join(f"{a:.1f}" for a in avg) + " |")
    print("\nvalidation action MSE at the end of training (held-out episodes; mean over seeds):\n")
    print("| env-dataset | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    for env, ds in cells:
        vals = []
        for m in models:
            rs = own.get((env, ds, m, _own_mode(m)), [])
            v = [x["val_loss"] for x in rs if x["val_loss"] is not None]
            vals.append(f"{statistics.mean(v):.4f}" if v else "-")
        print(f"| {env}-{ds} | " + " | ".join(vals) + " |")
    print(f"\n{PAPER}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rl_table.py", description="Markdown tables of offline-RL runs.",
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs_dir", help="folder whose run directories hold eval_rl*.json (from `minrnn rl eval --out`)")
    a = p.parse_args(argv)
    if not Path(a.runs_dir).is_dir():
        p.error(f"runs_dir: expected an existing folder, got {a.runs_dir}")
    return a


if __name__ == "__main__":
    sys.exit(main(parse_args().runs_dir))
