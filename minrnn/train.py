"""The training engine: one loop for every task (`minrnn train <task>`). Work in progress: config only."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Engine settings shared by all tasks; presets of a task may override any of them by field name."""
    steps: int = 1000              # optimiser steps
    batch_size: int = 32           # global batch per optimiser step (all ranks and micro-steps together)
    grad_accum: int = 1            # micro-steps per optimiser step (per rank)
    lr: float = 1e-3               # peak learning rate (AdamW)
    min_lr: float = 1e-4           # learning rate at the end of the cosine decay
    warmup_steps: int = 100        # linear warm-up steps
    weight_decay: float = 0.1      # AdamW decay on matrices only (not biases, norms, embeddings of size 1-D)
    beta1: float = 0.9             # AdamW beta1
    beta2: float = 0.99            # AdamW beta2
    grad_clip: float = 1.0         # max global gradient norm (0: off)
    eval_every: int = 250          # evaluate (and checkpoint) every N steps, and at the end
    patience: int = 0              # early stopping: evaluations without improvement (0: off)
    time_budget: float = 0.0       # stop after this many seconds of training (0: no limit)
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
