"""Evaluation roll-outs of Decision models in gymnasium MuJoCo, and D4RL score normalisation.

`rollout` plays N episodes in parallel (one gymnasium env each, seeds seed, seed+1, ...): at every step the
model gets the return-to-go still to collect (target - reward so far, scaled as in training), the state
normalised with the dataset's mean/std and the timestep; an episode that ends keeps its slot in the batch
but its env is no longer stepped. It reports raw returns, D4RL-normalised scores and env steps per second
of acting (all time inside the loop: model + env), with the model's share timed separately.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .models import Actor, DecisionModel

# D4RL reference returns (random, expert) used by `get_normalized_score`.
D4RL_REF = {"halfcheetah": (-280.178953, 12135.0), "hopper": (-20.272305, 3234.3), "walker2d": (1.629008, 4592.3)}
ENV_IDS = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}
# DT's evaluation targets (paper recipe), in raw return units.
DT_TARGETS = {"halfcheetah": 6000.0, "hopper": 3600.0, "walker2d": 5000.0}
GYM_FEATURE = "rolling out policies in gymnasium MuJoCo"


def check_env(env: str) -> str:
    if env not in ENV_IDS:
        raise ValueError(f"env: expected one of {sorted(ENV_IDS)}, got {env!r}")
    return env


def normalized_score(env: str, ret):
    """100 * (return - random) / (expert - random) with D4RL's reference returns."""
    lo, hi = D4RL_REF[check_env(env)]
    return 100.0 * (np.asarray(ret, np.float64) - lo) / (hi - lo)


def require_gym(feature: str = GYM_FEATURE):
    """gymnasium with its MuJoCo bindings, or MissingExtra (one line, with the install command)."""
    from minrnn.extras import require
    gym = require("gymnasium", "rl", feature, package="'gymnasium[mujoco]'")
    require("mujoco", "rl", feature, package="'gymnasium[mujoco]'")
    return gym


def make_env(env: str):
    gym = require_gym()
    try:
        return gym.make(ENV_IDS[check_env(env)])
    except gym.error.DependencyNotInstalled as e:  # another missing piece of the MuJoCo stack
        from minrnn.extras import MissingExtra, hint
        raise MissingExtra(f"{GYM_FEATURE} needs gymnasium[mujoco] ({' '.join(str(e).split())}): "
                           f"{hint('rl', repr('gymnasium[mujoco]'))}") from None


@torch.no_grad()
def rollout(model: DecisionModel, env: str, *, episodes: int, target_return: float, state_mean, state_std,
            rtg_scale: float = 1000.0, seed: int = 0, mode: str | None = None, max_steps: int = 1000) -> dict:
    """Play `episodes` episodes in parallel; -> dict with returns, lengths, scores and timings."""
    if episodes < 1:
        raise ValueError(f"episodes: expected >= 1, got {episodes}")
    was_training = model.training
    model.eval()
    envs = [make_env(env) for _ in range(episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]).astype(np.float32)
    if obs.shape[1] != model.obs_dim:
        raise ValueError(f"{env}: the model expects obs_dim={model.obs_dim}, the env gives {obs.shape[1]}")
    mean, std = np.asarray(state_mean, np.float32), np.asarray(state_std, np.float32)
    actor = Actor(model, episodes, mode)
    rtg = np.full(episodes, target_return, np.float64)
    ret, length = np.zeros(episodes), np.zeros(episodes, np.int64)
    active = np.ones(episodes, bool)
    t_model = steps = 0.0
    t0 = time.perf_counter()
    for t in range(max_steps):
        tm = time.perf_counter()
        a = actor.act(rtg / rtg_scale, (obs - mean) / std, np.full(episodes, t))
        a_np = a.float().cpu().numpy()
        actor.observe_action(a)
        t_model += time.perf_counter() - tm
        for i in np.flatnonzero(active):
            o, r, term, trunc, _ = envs[i].step(a_np[i])
            obs[i], ret[i], rtg[i], length[i] = o, ret[i] + r, rtg[i] - r, length[i] + 1
            steps += 1
            if term or trunc:
                active[i] = False
        if not active.any():
            break
    wall = time.perf_counter() - t0
    for e in envs:
        e.close()
    model.train(was_training)
    scores = normalized_score(env, ret)
    return dict(env=env, mode=actor.mode, acting=actor.step_kind, episodes=episodes, target_return=target_return,
                seed=seed,
                returns=ret.tolist(), lengths=length.tolist(), return_mean=float(ret.mean()),
                return_std=float(ret.std()), score_mean=float(scores.mean()), score_std=float(scores.std()),
                env_steps=int(steps), seconds=wall, steps_per_s=steps / wall, model_ms_per_step=1e3 * t_model / (t + 1))
