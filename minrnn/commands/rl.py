"""`minrnn rl eval|collect|plot`: offline RL roll-outs of trained runs, dataset collection, score curves.

    minrnn rl eval RUN_DIR --episodes 10 --seeds 0,1,2 [--target-return R] [--mode carried|window]
    minrnn rl collect --env hopper --kind medium --out data/locomotion    (SAC behaviour policy, resumable)
    minrnn rl plot RUN_DIR... [--out score.png]                           (normalised score vs training step)
Training itself is `minrnn train rl --env hopper --dataset medium --model mingru|minlstm|dt`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def _eval(args) -> int:
    import numpy as np
    import torch

    from minrnn.tasks.rl.evaluate import require_gym
    from minrnn.train import load_run
    require_gym("minrnn rl eval")  # before loading anything: one line with the install command
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.episodes < 1:
        raise ValueError(f"--episodes: expected >= 1, got {args.episodes}")
    seeds = [int(s) for s in args.seeds.split(",")]
    tk, model, saved = load_run(args.run_dir, args.ckpt, "cpu", {"data": args.data} if args.data else None)
    if saved["task"] != "rl":
        raise ValueError(f"run task: expected 'rl', got {saved['task']!r}")
    runs = [tk.rollout(model, args.episodes, seed=args.seed_base + 1000 * s, target_return=args.target_return,
                       mode=args.mode) for s in seeds]
    rets = np.concatenate([r["returns"] for r in runs])
    from minrnn.tasks.rl.evaluate import normalized_score
    scores = normalized_score(tk.cfg.env, rets)
    out = dict(run_dir=str(args.run_dir), model=saved["task_config"]["model"], env=tk.cfg.env,
               dataset=tk.cfg.dataset, ckpt=args.ckpt, step=saved["step"], mode=runs[0]["mode"],
               acting=runs[0]["acting"],
               target_return=runs[0]["target_return"], episodes=len(rets), seeds=seeds,
               return_mean=float(rets.mean()), return_std=float(rets.std()),
               score_mean=float(scores.mean()), score_std=float(scores.std()),
               score_per_seed=[r["score_mean"] for r in runs],
               steps_per_s=float(sum(r["env_steps"] for r in runs) / sum(r["seconds"] for r in runs)),
               model_ms_per_step=float(np.mean([r["model_ms_per_step"] for r in runs])))
    line = json.dumps(out)
    print(line)
    if args.out:
        from minrnn.checkpoint import atomic_write_json
        atomic_write_json(args.out, out)
    return 0


def _collect(args) -> int:
    import torch

    from minrnn.tasks.rl.collect import collect
    if args.threads:
        torch.set_num_threads(args.threads)
    collect(args.env, args.kind, args.out, seed=args.seed, threshold=args.threshold, step_cap=args.step_cap,
            eval_every=args.eval_every, eval_episodes=args.eval_episodes, transitions=args.transitions,
            learning_starts=args.learning_starts, buffer_size=args.buffer_size)
    return 0


def _plot(args) -> int:
    from minrnn.extras import require
    require("matplotlib", "plot", "minrnn rl plot", package="matplotlib").use("Agg")
    plt = require("matplotlib.pyplot", "plot", "minrnn rl plot", package="matplotlib")
    import numpy as np

    from minrnn.checkpoint import read_metrics
    curves: dict = {}  # (env-dataset, model) -> list of (steps, scores), one per run (seed)
    for rd in args.run_dirs:
        ev = [m for m in read_metrics(rd) if m.get("kind") == "eval" and "val_score" in m]
        if not ev:
            raise ValueError(f"{rd}: expected eval lines with val_score in metrics.jsonl (train with "
                             "--eval-episodes > 0), got none")
        cfg = json.loads((Path(rd) / "config.json").read_text())["task_config"]
        model = "dt" if cfg["model"] == "transformer" else cfg["model"]
        curves.setdefault((f"{cfg['env']}-{cfg['dataset']}", model), []).append(
            ([m["step"] for m in ev], [m["val_score"] for m in ev]))
    cells = sorted({c for c, _ in curves})
    cols = min(3, len(cells))
    rows = (len(cells) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False,
                             constrained_layout=True)
    colors = {"mingru": "tab:blue", "minlstm": "tab:orange", "dt": "tab:green"}
    for ax, cell in zip(axes.flat, cells):
        for (c, model), runs in sorted(curves.items()):
            if c != cell:
                continue
            steps = sorted(set.intersection(*(set(s) for s, _ in runs)))  # steps every seed evaluated
            ys = np.array([[dict(zip(s, y))[t] for t in steps] for s, y in runs])  # (seeds, steps)
            col = colors.get(model)
            ax.plot(steps, ys.mean(0), marker="o", color=col, label=f"{model} ({len(runs)} seed"
                    f"{'s' if len(runs) > 1 else ''})")
            if len(runs) > 1:
                ax.fill_between(steps, ys.min(0), ys.max(0), color=col, alpha=0.15)
        ax.set_title(cell, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("D4RL-normalised score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    fig.suptitle("evaluation during training: mean over seeds (band: min-max)", fontsize=9)
    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "rl_score.png"
    tmp = f"{out}.tmp.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


def register(sub) -> None:
    s = sub.add_parser("rl", help="offline RL: evaluate runs in gymnasium, collect datasets, plot scores")
    rs = s.add_subparsers(dest="rl_command", required=True, metavar="RL_COMMAND")
    e = rs.add_parser("eval", help="roll out a trained `minrnn train rl` run in gymnasium MuJoCo")
    e.add_argument("run_dir", help="run directory written by `minrnn train rl`")
    e.add_argument("--episodes", type=int, default=10, help="episodes per seed")
    e.add_argument("--seeds", default="0", help="comma-separated evaluation seeds (env reset seeds differ per seed)")
    e.add_argument("--seed-base", type=int, default=100_000, help="reset seed of episode 0 of seed 0")
    e.add_argument("--target-return", type=float, default=0.0, help="return to condition on (0: DT's target)")
    e.add_argument("--mode", choices=["auto", "carried", "window"], default="auto",
                   help="acting: carried state (O(1)/step, minRNN) or re-run the last K steps (DT)")
    e.add_argument("--ckpt", choices=["best", "last"], default="last", help="which checkpoint")
    e.add_argument("--data", default=None, help="override the run's dataset path (for the state statistics)")
    e.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: leave as is)")
    e.add_argument("--out", default=None, help="also write the result JSON here")
    e.set_defaults(func=_eval)
    c = rs.add_parser("collect", help="make a D4RL-layout dataset with a SAC behaviour policy (resumable)")
    c.add_argument("--env", choices=["halfcheetah", "hopper", "walker2d"], required=True, help="locomotion environment (gymnasium v5)")
    c.add_argument("--kind", choices=["medium", "medium-replay", "expert", "expert-replay", "medium-expert"],
                   required=True, help="dataset kind")
    c.add_argument("--out", required=True, help="output folder (checkpoints for resuming live here too)")
    c.add_argument("--seed", type=int, default=0, help="SAC seed")
    c.add_argument("--threshold", type=float, default=0.0, help="stop return (0: the level's default)")
    c.add_argument("--step-cap", type=int, default=0, help="max env steps of SAC training (0: the level's default)")
    c.add_argument("--eval-every", type=int, default=10_000, help="env steps between evaluations/checkpoints")
    c.add_argument("--eval-episodes", type=int, default=5, help="deterministic episodes per evaluation")
    c.add_argument("--transitions", type=int, default=200_000, help="minimum transitions of roll-out datasets")
    c.add_argument("--learning-starts", type=int, default=100, help="random warm-up steps of SAC")
    c.add_argument("--buffer-size", type=int, default=1_000_000, help="SAC replay buffer capacity")
    c.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: leave as is)")
    c.set_defaults(func=_collect)
    p = rs.add_parser("plot", help="D4RL-normalised score vs training step of rl runs")
    p.add_argument("run_dirs", nargs="+", help="run directories trained with --eval-episodes > 0")
    p.add_argument("--out", default=None, help="output PNG (default: rl_score.png in the first RUN_DIR)")
    p.set_defaults(func=_plot)
