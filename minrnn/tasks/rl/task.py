"""The `rl` training task: Decision-minGRU / Decision-minLSTM / Decision Transformer on offline locomotion data.

`minrnn train rl --env hopper --dataset medium --model mingru|minlstm|dt` trains on
``<data_dir>/<env>-<dataset>.hdf5`` (D4RL layout; default ../shared/data/locomotion) or on ``--data PATH``
(a D4RL hdf5 file or a Minari dataset id/directory). The loss is the DT loss: mean squared error of the
predicted actions over the real (unpadded) positions. Evaluation: the same loss on held-out episodes (every
`val_every`-th episode; a split that holds out no episode, or every one, is a ValueError) and, with
``eval_episodes > 0``, roll-outs in gymnasium reporting the raw return and the D4RL-normalised score.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...paths import find_data
from ..base import Task, TaskConfig, model_kwargs
from .data import SegmentSampler, load_trajectories
from .evaluate import DT_TARGETS, check_env, require_gym, rollout
from .models import ARCHS, DecisionModel


@dataclass
class RLConfig(TaskConfig):
    """Offline RL task config (architecture fields come from TaskConfig)."""
    model: str = "mingru"          # mingru | minlstm | dt (= transformer) | mamba (Decision Mamba)
    env: str = "hopper"            # hopper | halfcheetah | walker2d
    dataset: str = "medium"        # medium | medium-replay | medium-expert | expert (file <env>-<dataset>.hdf5)
    data: str = ""                 # explicit D4RL hdf5 file or Minari dataset (id or dir); overrides env/dataset file
    context: int = 20              # K: steps per training segment (DT: 20)
    rtg_scale: float = 1000.0      # returns-to-go are divided by this (DT: 1000)
    max_ep_len: int = 1000         # timestep embedding size
    val_every: int = 20            # every n-th episode is held out for the validation loss (>= 2)
    eval_batches: int = 8          # batches of 64 segments for the validation loss
    eval_episodes: int = 0         # roll-outs per evaluation (0: loss only)
    target_return: float = 0.0     # return to condition on in roll-outs (0: DT's target for the env)
    act_mode: str = "auto"         # auto (carried for minRNN, window for DT) | carried | window
    eval_seed: int = 10_000        # env reset seed of the first evaluation episode
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 1
    conv_kernel: int = 0
    dropout: float = 0.1

    def __post_init__(self):
        if self.model == "dt":
            self.model = "transformer"
        super().__post_init__()
        if self.model not in ARCHS:
            raise ValueError(f"model: expected mingru, minlstm, dt or mamba, got {self.model!r}")
        check_env(self.env)
        if self.act_mode not in ("auto", "carried", "window"):
            raise ValueError(f"act_mode: expected auto, carried or window, got {self.act_mode!r}")
        for name in ("context", "max_ep_len", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.val_every < 2:  # 0 would validate on training episodes, 1 would leave none to train on
            raise ValueError(f"val_every (--val-every): expected >= 2 (every n-th episode is held out for the "
                             f"validation loss, so 1 would hold out all of them), got {self.val_every}")


class RLTask(Task):
    name = "rl"
    Config = RLConfig
    eval_metric, eval_mode = "loss", "min"

    def __init__(self, cfg: RLConfig):
        super().__init__(cfg)
        src = cfg.data or find_data(f"locomotion/{cfg.env}-{cfg.dataset}.hdf5")
        if cfg.eval_episodes > 0:  # roll-outs need gymnasium MuJoCo: say so now, not at the first evaluation
            require_gym("evaluation roll-outs (--eval-episodes > 0)")
        trajs = load_trajectories(src)
        held = [i % cfg.val_every == cfg.val_every - 1 for i in range(len(trajs))]
        if not any(held):
            raise ValueError(f"{src}: has {len(trajs)} episode(s), so val_every={cfg.val_every} holds out none for "
                             "the validation loss; expected at least val_every episodes: "
                             + (f"set --val-every between 2 and {len(trajs)}" if len(trajs) >= 2 else
                                "use a dataset with at least 2 episodes (one to train on, one held out)"))
        val = [t for t, h in zip(trajs, held) if h]
        train = [t for t, h in zip(trajs, held) if not h]
        self.source, self.n_episodes = str(src), len(trajs)
        self.train_data = SegmentSampler(train, cfg.context, cfg.rtg_scale, cfg.max_ep_len)
        self.val_data = SegmentSampler(val, cfg.context, cfg.rtg_scale, cfg.max_ep_len)
        # normalise with the training statistics everywhere
        self.val_data.state_mean, self.val_data.state_std = self.train_data.state_mean, self.train_data.state_std

    @classmethod
    def preset(cls, preset: str, model: str) -> dict:
        super().preset(preset, model)
        common = dict(d_model=128, n_layers=3, n_heads=1, dropout=0.1, context=20, batch_size=64,
                      lr=1e-4, min_lr=1e-5, weight_decay=1e-4, warmup_steps=10_000, grad_clip=0.25)
        # Decision Mamba: mambapy blocks (d_state 16, expand 2, conv 4) with the MLP at x3 instead of x4, which
        # puts it within 10% of Decision-minGRU's backbone (tests/test_mamba.py)
        mamba = dict(conv_kernel=4, mlp_ratio=3.0, d_state=16) if model == "mamba" else {}
        if preset == "paper":  # DT's recipe: 10 x 10k steps; 5 roll-outs per evaluation in DT's code
            return dict(common, steps=100_000, eval_every=10_000, eval_episodes=10, **mamba)
        # what one shared CPU thread affords in minutes: a narrower model, smaller batches, 1.5k steps
        return dict(common, d_model=64, batch_size=32, lr=6e-4, min_lr=6e-5, warmup_steps=100, steps=1_500,
                    eval_every=500, eval_episodes=3, **mamba)

    def data_fingerprint(self) -> dict | None:
        """sha256 of the dataset file (a Minari id or folder: None, it is not one file)."""
        p = Path(self.source)
        if not p.is_file():
            return None
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return {"path": str(p), "sha256": h.hexdigest()}

    def build_model(self) -> DecisionModel:
        c = self.cfg
        kw = model_kwargs(c)
        d = kw.pop("d_model")
        return DecisionModel(c.model, self.train_data.obs_dim, self.train_data.act_dim, context=c.context,
                             max_ep_len=c.max_ep_len, d_model=d, **kw)

    def _batch(self, sampler: SegmentSampler, seeds) -> dict:
        b = sampler.sample([np.random.default_rng(s) for s in seeds])
        return {k: torch.from_numpy(v) for k, v in b.items()}

    def train_batch(self, step: int, seed: int, lo: int, hi: int) -> dict:
        # one generator per example, seeded by (seed, step, example): the same examples however [lo, hi) is cut
        return self._batch(self.train_data, [(seed, step, i) for i in range(lo, hi)])

    def loss(self, model: DecisionModel, batch: dict):
        pred, _ = model(batch["rtg"], batch["states"], batch["actions"], batch["timesteps"])
        m = batch["mask"].to(pred.dtype).unsqueeze(-1)  # (B, K, 1)
        per_ex = ((pred - batch["actions"]) ** 2 * m).sum((1, 2)) / (m.sum((1, 2)) * pred.shape[-1])
        loss = per_ex.mean()
        return loss, {"action_mse": float(loss.detach())}

    def count_tokens(self, batch) -> int:
        return int(batch["mask"].sum())

    @torch.no_grad()
    def evaluate(self, model: DecisionModel, split: str = "val") -> dict:
        c = self.cfg
        data = self.val_data if split == "val" else self.train_data
        losses = [float(self.loss(model, self._batch(data, [(c.eval_seed, j, i) for i in range(64)]))[0])
                  for j in range(c.eval_batches)]
        out = {"loss": float(np.mean(losses))}
        if c.eval_episodes > 0:
            r = self.rollout(model, c.eval_episodes, seed=c.eval_seed)
            out.update(score=r["score_mean"], score_std=r["score_std"], return_mean=r["return_mean"],
                       return_std=r["return_std"], act_steps_per_s=r["steps_per_s"])
        return out

    def rollout(self, model: DecisionModel, episodes: int, *, seed: int, target_return: float = 0.0,
                mode: str = "") -> dict:
        c = self.cfg
        mode = mode or c.act_mode
        return rollout(model, c.env, episodes=episodes, target_return=target_return or c.target_return
                       or DT_TARGETS[c.env], state_mean=self.train_data.state_mean,
                       state_std=self.train_data.state_std, rtg_scale=c.rtg_scale, seed=seed,
                       mode=None if mode == "auto" else mode, max_steps=c.max_ep_len)


TASK = RLTask
