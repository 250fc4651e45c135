"""`minrnn train TASK [--preset P] [--FIELD VALUE ...]` and `minrnn train --resume RUN_DIR`.

The flags depend on the task (its config dataclass), so everything after `train` is parsed here in a second
step: every field of `TrainConfig` and of the task's config is a kebab-case flag; `--preset` fills fields
first and explicit flags override it. `minrnn train TASK --help` lists them.
"""
from __future__ import annotations

import argparse


def _task_of(argv: list[str]) -> str | None:
    """The task named by the first positional argument (or in the config of the run given to --resume)."""
    import json
    from pathlib import Path
    if "--resume" in argv:
        i = argv.index("--resume")
        if i + 1 < len(argv) and (Path(argv[i + 1]) / "config.json").is_file():
            return json.loads((Path(argv[i + 1]) / "config.json").read_text())["task"]
        return None
    for a in argv:
        if not a.startswith("-"):
            return a
        if a in ("-h", "--help"):
            return None
    return None


def build_parser(task: str | None) -> argparse.ArgumentParser:
    from minrnn.dataclass_cli import add_dataclass_args
    from minrnn.tasks import TASKS, get_task
    from minrnn.train import TrainConfig
    p = argparse.ArgumentParser(prog="minrnn train", description="train a task with the one training engine "
                                "(see docs/training.md); run under torchrun for data-parallel training")
    p.add_argument("task", nargs="?", choices=sorted(TASKS), help="task to train")
    p.add_argument("--preset", default=None, help="preset of the task's config, e.g. cpu or paper")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR from its "
                   "last checkpoint (only steps, time budget, eval/log/ckpt cadence, device settings may change)")
    add_dataclass_args(p, TrainConfig, "engine (TrainConfig)")
    if task in TASKS:
        cls = get_task(task)
        add_dataclass_args(p, cls.Config, f"task ({cls.Config.__name__})")
    return p


def run(args) -> int:
    from minrnn.dataclass_cli import given
    from minrnn.tasks import TASKS, get_task
    from minrnn.train import TrainConfig, train
    argv = list(args.args)
    task = _task_of(argv)
    if task is not None and task not in TASKS:
        raise ValueError(f"task: expected one of {sorted(TASKS)}, got {task!r}")
    ns = build_parser(task).parse_args(argv)
    if ns.resume is None and ns.task is None:
        raise ValueError("expected a TASK or --resume RUN_DIR")
    overrides = given(ns, TrainConfig)
    if task is not None:
        overrides.update(given(ns, get_task(task).Config))
    if ns.resume is not None:
        summary = train(resume=ns.resume, overrides=overrides)
    else:
        summary = train(ns.task, ns.preset, overrides)
    if summary.get("steps") is not None and summary.get("rank", 0) == 0:
        best = {k: v for k, v in summary.items() if k.startswith("best_")}
        print(f"done: {summary['steps']} steps in {summary['train_time']:.1f} s of training; {best}; "
              f"run dir {summary['run_dir']}")
    return 0


def register(sub) -> None:
    # prefix_chars="+": this parser treats every token (flags included) as an argument for build_parser
    s = sub.add_parser("train", help="train a task (minrnn train TASK --help for its flags)", add_help=False,
                       prefix_chars="+", description="minrnn train TASK [--preset P] [flags]")
    s.add_argument("args", nargs="*", help="TASK and flags")
    s.set_defaults(func=run)
