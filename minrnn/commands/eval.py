"""`minrnn eval RUN_DIR [--split S] [--ckpt best|last]`: evaluate a run's checkpoint with its task's metrics."""
from __future__ import annotations


def run(args) -> int:
    import json

    import torch

    from minrnn.train import load_run
    if args.threads:
        torch.set_num_threads(args.threads)
    tk, model, saved = load_run(args.run_dir, args.ckpt, args.device, {"data": args.data} if args.data else None)
    split = args.split or tk.eval_split
    with torch.no_grad():
        metrics = tk.evaluate(model, split)
    print(json.dumps({"run_dir": args.run_dir, "task": saved["task"], "model": saved["task_config"]["model"],
                      "ckpt": args.ckpt, "step": saved["step"], "split": split,
                      **{k: float(v) for k, v in metrics.items()}}))
    return 0


def register(sub) -> None:
    s = sub.add_parser("eval", help="evaluate a training run's checkpoint (any task)")
    s.add_argument("run_dir", help="run directory written by `minrnn train`")
    s.add_argument("--split", default=None, help="split to evaluate (default: the task's validation split)")
    s.add_argument("--ckpt", choices=["best", "last"], default="best", help="which checkpoint")
    s.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    s.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    s.add_argument("--data", default=None, help="override the task's data path (tasks with a `data` field)")
    s.set_defaults(func=run)
