"""How the HalfCheetah stand-ins move: the root angle (observation 1) over each episode (docs/rl.md, Data).

  python scripts/experiments/rl_flip_check.py [--data ../shared/data/locomotion] [--rollouts 2] [--run RUN_DIR]

Per file: the fraction of states with |angle| > 2 rad, of episodes that get there, the median step at which
they do, and the mean return of flipping / non-flipping episodes. --rollouts N also plays the shipped SAC
behaviour policy (`halfcheetah-medium-policy.zip`, stochastic actions, stable-baselines3) for N episodes in
our evaluation env; --run RUN_DIR plays one episode of a trained Decision model (carried/window acting as
`minrnn rl eval`, target return 6000) and prints its angle, to see whether it flips.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FLIP = 2.0  # rad; the cheetah is on its back past ~pi/2


def data_stats(path: Path) -> None:
    import h5py
    with h5py.File(path, "r") as f:
        ang, to, term, rew = f["observations"][:, 1], f["timeouts"][:], f["terminals"][:], f["rewards"][:]
    ends = np.flatnonzero(to | term) + 1
    starts = np.r_[0, ends[:-1]]
    first = []
    for s, e in zip(starts, ends):
        i = np.flatnonzero(np.abs(ang[s:e]) > FLIP)
        first.append(i[0] if len(i) else -1)
    first = np.array(first)
    rets = np.array([rew[s:e].sum() for s, e in zip(starts, ends)])
    flip = first >= 0
    not_flip = rets[~flip].mean() if (~flip).any() else float("nan")
    print(f"{path.name}: {len(first)} episodes; states with |angle| > {FLIP}: {np.mean(np.abs(ang) > FLIP):.3f}; "
          f"episodes that flip: {flip.mean():.3f}; median first step: "
          f"{np.median(first[flip]) if flip.any() else '-'}; mean return flipping "
          f"{rets[flip].mean() if flip.any() else float('nan'):.1f} / not {not_flip:.1f}")


def play(act, steps: int = 1000, seed: int = 100_000) -> None:
    from minrnn.tasks.rl.evaluate import make_env
    env = make_env("halfcheetah")
    obs, _ = env.reset(seed=seed)
    ret, angles = 0.0, []
    for t in range(steps):
        obs, r, term, trunc, _ = env.step(act(obs, t, ret))
        ret += r
        angles.append(float(obs[1]))
        if term or trunc:
            break
    at = {i: round(angles[i], 2) for i in (5, 14, 30, 50, 250, 500) if i < len(angles)}
    print(f"  reset seed {seed}: return {ret:.1f} over {len(angles)} steps; angle at step {at}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/locomotion")
    p.add_argument("--rollouts", type=int, default=0)
    p.add_argument("--run", default=None)
    a = p.parse_args()
    d = Path(a.data)
    for name in ("halfcheetah-medium.hdf5", "halfcheetah-medium-replay.hdf5"):
        data_stats(d / name)
    if a.rollouts:
        from stable_baselines3 import SAC
        sac = SAC.load(str(d / "halfcheetah-medium-policy.zip"), device="cpu")
        print("SAC behaviour policy (stochastic):")
        for i in range(a.rollouts):
            play(lambda o, t, r: sac.predict(o, deterministic=False)[0], seed=100_000 + i)
    if a.run:
        import torch

        from minrnn.tasks.rl.models import Actor
        from minrnn.train import load_run
        torch.set_num_threads(1)
        tk, model, _ = load_run(a.run, "last", "cpu", None)
        model.eval()
        mean = np.asarray(tk.train_data.state_mean, np.float32)
        std = np.asarray(tk.train_data.state_std, np.float32)
        actor = Actor(model, 1)
        target = 6000.0

        def act(o, t, ret):
            a_ = actor.act(np.array([(target - ret) / tk.cfg.rtg_scale]), ((o - mean) / std)[None], np.array([t]))
            actor.observe_action(a_)
            return a_.numpy()[0]
        print(f"{a.run} ({actor.mode} acting):")
        play(act)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
