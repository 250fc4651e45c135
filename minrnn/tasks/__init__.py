"""Registry of training tasks: task name -> module that defines `TASK` (a `tasks.base.Task` subclass).

Modules are imported lazily by `get_task`, so `minrnn --help` and unrelated tasks never pay for (or need
the optional dependencies of) a task. To add a task, add one line to `TASKS` (see docs/training.md).
"""
from __future__ import annotations

import importlib

TASKS: dict[str, str] = {
    "shakespeare": "minrnn.tasks.shakespeare",
    "rl": "minrnn.tasks.rl.task",
    "selective-copy": "minrnn.tasks.selective_copy",
    "chomsky": "minrnn.tasks.chomsky",
    "forecast": "minrnn.tasks.forecast.task",
}


def get_task(name: str):
    """The Task class registered under `name`."""
    if name not in TASKS:
        raise ValueError(f"task: expected one of {sorted(TASKS)}, got {name!r}")
    module = importlib.import_module(TASKS[name])
    task = getattr(module, "TASK", None)
    if task is None:
        raise TypeError(f"{TASKS[name]}: expected a module-level TASK (a Task subclass), found none")
    return task
