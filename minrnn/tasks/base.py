"""The task interface of the training engine (`minrnn/train.py`).

A task is a subclass of `Task` with a config dataclass (a subclass of `TaskConfig`) and presets. The engine
owns everything generic (optimiser, schedule, clipping, accumulation, DDP, checkpoints, logging); a task owns
its data, its model and its loss/metrics:

    class MyTask(Task):
        name = "my_task"
        Config = MyConfig                      # dataclass, subclass of TaskConfig; one help line per field
        eval_metric, eval_mode = "loss", "min" # what early stopping and "best" watch in evaluate()'s dict
        @classmethod
        def preset(cls, preset, model): ...    # overrides of task *and* train config fields, by field name
        def build_model(self): ...             # an nn.Module (see minrnn.models.baselines.make_model)
        def train_batch(self, step, seed, lo, hi): ...  # examples [lo, hi) of the global batch of `step`
        def loss(self, model, batch): ...      # -> (scalar loss tensor, {name: float})
        def evaluate(self, model, split): ...  # -> {name: float}; model is in eval mode, under no_grad

Exactness contract: `train_batch` must be a pure function of (config, seed, step, lo, hi) and must return the
same examples for [lo, hi) whether the global batch is cut into one slice or many. The engine takes, for
rank r of W with A accumulation micro-steps and global batch size B, the slice of micro-step m as
lo = (r * A + m) * B / (W * A). So a resumed run reads exactly the batches the killed run would have read,
and W processes see exactly the global batch one process sees. `loss` must return the mean over the
examples of the batch (equal-size slices, so the mean of the slice means is the global mean).
`evaluate` must be deterministic (fixed eval seed), so every rank computes the same value.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..models.arch import ArchConfig

@dataclass
class TaskConfig(ArchConfig):
    """Fields every task shares: the architecture (`models.arch.ArchConfig`, declared there once). Tasks add
    their own fields, and may override an architecture field's default by redeclaring it."""


def model_kwargs(cfg: TaskConfig) -> dict:
    """The architecture fields of a task config (all but `model`), as keyword arguments of `make_model`."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(ArchConfig) if f.name != "model"}


def step_generator(seed: int, step: int, salt: str = "") -> torch.Generator:
    """A CPU generator seeded from (seed, step, salt) only: data that is a pure function of the step."""
    h = hashlib.sha256(f"{seed}/{step}/{salt}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(h[:8], "little") & ((1 << 63) - 1))


def example_generator(seed: int, step: int, index: int, salt: str = "") -> torch.Generator:
    """A generator for example `index` of the global batch of `step`: slicing the batch any way gives the
    same examples (what makes DDP and gradient accumulation exact)."""
    return step_generator(seed, step, f"{salt}#{index}")


def example_ints(seed: int, step: int, lo: int, hi: int, high: int, salt: str = "") -> torch.Tensor:
    """One integer in [0, high) per example lo..hi-1 of step's global batch (e.g. window offsets), int64 (hi-lo,)."""
    out = []
    for i in range(lo, hi):
        h = hashlib.sha256(f"{seed}/{step}/{salt}#{i}".encode()).digest()
        out.append(int.from_bytes(h[:8], "little") % high)
    return torch.tensor(out, dtype=torch.int64)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested tuple/list/dict) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class Task:
    """Base class of a training task; see the module docstring for the contract."""
    name: ClassVar[str] = ""
    Config: ClassVar[type] = TaskConfig
    eval_metric: ClassVar[str] = "loss"   # key of evaluate()'s dict watched by early stopping
    eval_mode: ClassVar[str] = "min"      # "min" or "max"
    eval_split: ClassVar[str] = "val"     # split evaluated during training

    def __init__(self, cfg: TaskConfig):
        if not isinstance(cfg, self.Config):
            raise TypeError(f"{self.name} config: expected {self.Config.__name__}, got {type(cfg).__name__}")
        self.cfg = cfg

    @classmethod
    def presets(cls) -> tuple[str, ...]:
        return ("cpu", "paper")

    @classmethod
    def preset(cls, preset: str, model: str) -> dict:
        """Field overrides (task config and train config fields, by name) for `preset` and architecture."""
        if preset not in cls.presets():
            raise ValueError(f"preset: expected one of {cls.presets()}, got {preset!r}")
        return {}

    @classmethod
    def preset_for(cls, preset: str, model: str, given: dict) -> dict:
        """The preset's overrides when they depend on other fields the user gave (`given`, by name: e.g. a
        dataset whose size sets the number of steps); default: `preset(preset, model)`."""
        return cls.preset(preset, model)

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def data_fingerprint(self) -> dict | None:
        """{"path", "sha256"} of the data file the task reads (recorded in config.json; a resumed run whose
        data changed stops with an error), or None for generated data."""
        return None

    def train_batch(self, step: int, seed: int, lo: int, hi: int) -> Any:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict:
        raise NotImplementedError

    def count_tokens(self, batch: Any) -> int:
        """Tokens (time steps x sequences) in a batch, for tokens/s; default: numel of the first tensor's
        first two dims."""
        t = batch[0] if isinstance(batch, (list, tuple)) else batch
        if isinstance(t, dict):
            t = next(iter(t.values()))
        return int(t.shape[0] * (t.shape[1] if t.dim() > 1 else 1))
