"""Training-engine settings: `TrainConfig` (shared by every task), config resolution (defaults <- task preset
<- overrides), the learning-rate schedule and the AdamW parameter groups. The loop itself is `train.py`."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .validate import check_float as _float, check_int as _int
from .rundir import check_run_name
from .tasks import get_task


@dataclass
class TrainConfig:
    """Engine settings shared by all tasks; presets of a task may override any of them by field name."""
    steps: int = 1000              # optimiser steps
    batch_size: int = 32           # global batch per optimiser step (all ranks and micro-steps together)
    grad_accum: int = 1            # micro-steps per optimiser step (per rank)
    lr: float = 1e-3               # peak learning rate (AdamW)
    min_lr: float = 1e-4           # learning rate at the end of the cosine decay
    warmup_steps: int = 100        # linear warm-up steps
    weight_decay: float = 0.1      # AdamW decay, on weight matrices only (not biases, norms)
    beta1: float = 0.9             # AdamW beta1
    beta2: float = 0.99            # AdamW beta2
    grad_clip: float = 1.0         # max global gradient norm (0: off)
    eval_every: int = 250          # evaluate (and checkpoint) every N steps, and at the end
    ckpt_every: int = 0            # also checkpoint every N steps (0: only at evaluations)
    patience: int = 0              # early stopping: evaluations without improvement (0: off)
    time_budget: float = 0.0       # stop after this many seconds of training, evaluation excluded (0: none)
    seed: int = 0                  # seed of init, data order and dropout
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    amp: str = "none"              # autocast on GPU: none | bf16 | fp16
    compile: bool = False          # torch.compile the model
    threads: int = 0               # torch.set_num_threads (0: leave as is)
    out_dir: str = "runs"          # parent folder of run directories
    run_name: str = ""             # run directory name (default: task-model-seed-time)
    log_every: int = 10            # write a train metrics line every N steps
    tensorboard: bool = False      # also write TensorBoard events (needs the tensorboard package)
    progress: bool = True          # tqdm progress bar

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "log_every"):
            _int(name, getattr(self, name), 1)
        for name in ("warmup_steps", "ckpt_every", "patience", "threads", "seed"):
            _int(name, getattr(self, name), 0)
        for name in ("grad_clip", "weight_decay", "time_budget", "min_lr"):
            _float(name, getattr(self, name), 0.0)
        _float("lr", self.lr, 0.0, lo_open=True)
        for name in ("beta1", "beta2"):
            _float(name, getattr(self, name), 0.0, 1.0)
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp: expected none, bf16 or fp16, got {self.amp!r}")
        check_run_name(self.run_name)


# train-config fields a resumed run may change (the rest would change the result)
RESUMABLE = ("steps", "time_budget", "eval_every", "ckpt_every", "patience", "device", "amp", "compile",
             "threads", "progress", "log_every", "tensorboard")


def resolve_config(task: str, preset: str | None = None, overrides: dict | None = None):
    """(Task class, task config, train config) from defaults <- preset <- overrides (field names)."""
    task_cls = get_task(task)
    overrides = dict(overrides or {})
    if preset and "model" in overrides:
        task_cls.Config(model=overrides["model"])  # an unknown model is a clear error before the preset's lookup
    model = overrides.get("model", task_cls.Config().model)
    values = dict(task_cls.preset_for(preset, model, overrides)) if preset else {}
    values.update(overrides)
    tnames = {f.name for f in dataclasses.fields(TrainConfig)}
    knames = {f.name for f in dataclasses.fields(task_cls.Config)}
    unknown = sorted(set(values) - tnames - knames)
    if unknown:
        raise ValueError(f"unknown config fields {unknown}: expected fields of TrainConfig or "
                         f"{task_cls.Config.__name__}")
    return (task_cls, task_cls.Config(**{k: v for k, v in values.items() if k in knames}),
            TrainConfig(**{k: v for k, v in values.items() if k in tnames}))


def lr_factor(step: int, cfg: TrainConfig, train_time: float = 0.0) -> float:
    """Multiplier of cfg.lr for the update after `step` completed steps: linear warm-up, then cosine to
    min_lr. With a time budget the decay follows whichever runs out first, steps or seconds, so a run cut
    by the budget still ends at min_lr (such a run depends on timing and cannot be resumed bit for bit)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    if cfg.time_budget > 0:
        progress = max(progress, min(1.0, train_time / cfg.time_budget))
    floor = min(cfg.min_lr / cfg.lr, 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    params = {id(p): (n, p) for n, p in model.named_parameters() if p.requires_grad}.values()
    decay = [p for n, p in params if p.dim() >= 2]
    no_decay = [p for n, p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)
