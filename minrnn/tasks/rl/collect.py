"""Make D4RL-layout locomotion datasets with a SAC behaviour policy (stable-baselines3), resumably.

Stage 1 trains SAC (library defaults, one env, seed) in chunks of `eval_every` env steps; after each chunk
the deterministic policy is evaluated on `eval_episodes` episodes and the model, replay buffer and progress
(`<prefix>-state.json`) are checkpointed, so a killed run resumes from its last chunk. Training stops at the
first evaluation whose mean return reaches the threshold of the dataset level, or at `step_cap`.
An episode interrupted by a resume is stored as cut (timeout flag), since the env state is not saved.

Stage 2 writes the dataset (D4RL layout, gzip, atomically):
- ``medium-replay`` / ``expert-replay``: the replay buffer up to the stop point, in collection order;
- ``medium`` / ``expert``: whole episodes of actions *sampled* from the stopped stochastic policy (as D4RL),
  reset seeds 20000, 20001, ..., until at least `transitions` are stored;
- ``medium-expert``: the medium and expert files concatenated (both are made if missing).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .evaluate import ENV_IDS, check_env, make_env, normalized_score, require_gym

# Mean deterministic evaluation return at which training stops, per level (raw returns of the v5 envs).
THRESHOLDS = {"medium": {"hopper": 1500.0, "halfcheetah": 4500.0, "walker2d": 2500.0},
              "expert": {"hopper": 3200.0, "halfcheetah": 10000.0, "walker2d": 4300.0}}
STEP_CAPS = {"medium": 350_000, "expert": 1_000_000}
KINDS = ("medium", "medium-replay", "expert", "expert-replay", "medium-expert")
FEATURE = "collecting datasets (minrnn rl collect)"


def _sac():
    from minrnn.extras import require
    return require("stable_baselines3", "rl", FEATURE, package="stable-baselines3").SAC


def _check_deps() -> None:
    """Every optional module collecting needs, checked before any file is written (MissingExtra)."""
    from .data import _h5py
    require_gym(FEATURE)
    _sac()
    _h5py()


def evaluate_policy(model, env: str, episodes: int, seed: int, deterministic: bool = True) -> list[float]:
    """Undiscounted returns of `episodes` episodes (reset seeds seed, seed+1, ...)."""
    e, rets = make_env(env), []
    for i in range(episodes):
        obs, _ = e.reset(seed=seed + i)
        done, ret = False, 0.0
        while not done:
            a, _ = model.predict(obs, deterministic=deterministic)
            obs, r, term, trunc, _ = e.step(a)
            ret, done = ret + float(r), term or trunc
        rets.append(ret)
    e.close()
    return rets


def train_sac(env: str, level: str, out_dir: Path, *, threshold: float, step_cap: int, eval_every: int,
              eval_episodes: int, seed: int, learning_starts: int = 100, buffer_size: int = 1_000_000,
              log=print):
    """Stage 1 (resumable): -> (model, state dict). Files: <env>-<level>-sac.zip, -replay.pkl, -state.json."""
    SAC = _sac()
    prefix = out_dir / f"{env}-{level}"
    state_path, zip_path, buf_path = Path(f"{prefix}-state.json"), Path(f"{prefix}-sac.zip"), Path(f"{prefix}-replay.pkl")
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    if state is not None and (state["threshold"], state["seed"]) != (threshold, seed):
        raise ValueError(f"{state_path}: resuming expects threshold={state['threshold']} seed={state['seed']}, "
                         f"got threshold={threshold} seed={seed}; use another --out or delete the files")
    if state is not None and zip_path.exists() and buf_path.exists():
        model = SAC.load(zip_path, env=make_env(env), device="cpu")
        model.load_replay_buffer(buf_path)
        rb = model.replay_buffer
        last = (rb.pos - 1) % rb.buffer_size
        if rb.size() and not rb.dones[last, 0]:  # the env state is lost: the running episode is cut here
            rb.dones[last, 0], rb.timeouts[last, 0] = 1.0, 1.0
        if state["stop_reason"] == "step_cap" and model.num_timesteps < step_cap:
            state["stop_reason"] = ""  # a larger cap extends the run
        log(f"resumed {prefix} at {model.num_timesteps} env steps")
    else:
        state = dict(env_id=ENV_IDS[env], level=level, threshold=threshold, seed=seed, evals=[], stop_reason="")
        model = SAC("MlpPolicy", make_env(env), seed=seed, device="cpu", learning_starts=learning_starts,
                    buffer_size=buffer_size, verbose=0)
    while not state["stop_reason"]:
        chunk = min(eval_every, step_cap - model.num_timesteps)
        model.learn(chunk, reset_num_timesteps=False)
        rets = evaluate_policy(model, env, eval_episodes, seed=10_000)
        state["evals"].append([int(model.num_timesteps), float(np.mean(rets))])
        log(f"{env} {level}: {model.num_timesteps} steps, eval return {np.mean(rets):.1f}")
        if np.mean(rets) >= threshold:
            state["stop_reason"] = "threshold"
        elif model.num_timesteps >= step_cap:
            state["stop_reason"] = "step_cap"
        model.save(zip_path)  # sb3 writes these itself; the state file below is written last, atomically
        model.save_replay_buffer(buf_path)
        _atomic_text(state_path, json.dumps(state, indent=1))
    return model, state


def replay_arrays(model) -> dict:
    """The replay buffer in collection order as D4RL arrays; the last transition is flagged as a timeout."""
    rb = model.replay_buffer
    n = rb.size()
    idx = np.arange(n) if not rb.full else (np.arange(n) + rb.pos) % rb.buffer_size
    done, tout = rb.dones[idx, 0] > 0, rb.timeouts[idx, 0] > 0
    act = model.policy.unscale_action(rb.actions[idx, 0])
    timeouts = tout.copy()
    timeouts[-1] = True
    return dict(observations=rb.observations[idx, 0].astype(np.float32), actions=act.astype(np.float32),
                rewards=rb.rewards[idx, 0].astype(np.float32), terminals=done & ~tout, timeouts=timeouts & ~(done & ~tout))


def rollout_arrays(model, env: str, transitions: int, seed: int = 20_000) -> dict:
    """Whole episodes of sampled (stochastic) actions until at least `transitions` are stored."""
    e, cols = make_env(env), {k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
    ep = 0
    while len(cols["rewards"]) < transitions:
        obs, _ = e.reset(seed=seed + ep)
        done = False
        while not done:
            a, _ = model.predict(obs, deterministic=False)
            nxt, r, term, trunc, _ = e.step(a)
            done = term or trunc
            for k, v in zip(cols, (obs, a, r, term, trunc and not term)):
                cols[k].append(v)
            obs = nxt
        ep += 1
    e.close()
    return {k: np.asarray(v, np.float32 if k in ("observations", "actions", "rewards") else bool)
            for k, v in cols.items()}


def write_d4rl(path: Path, arrays: dict, attrs: dict) -> None:
    """Write a D4RL-layout hdf5 file atomically (temp file + os.replace)."""
    from .data import _h5py
    h5py = _h5py()
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v, compression="gzip")
        f.attrs.update(attrs)
    os.replace(tmp, path)


def collect(env: str, kind: str, out_dir, *, seed: int = 0, threshold: float = 0.0, step_cap: int = 0,
            eval_every: int = 10_000, eval_episodes: int = 5, transitions: int = 200_000,
            learning_starts: int = 100, buffer_size: int = 1_000_000, log=print) -> Path:
    """Make `<out_dir>/<env>-<kind>.hdf5` (see the module docstring); returns its path."""
    check_env(env)
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    _check_deps()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{env}-{kind}.hdf5"
    kw = dict(seed=seed, eval_every=eval_every, eval_episodes=eval_episodes, transitions=transitions,
              learning_starts=learning_starts, buffer_size=buffer_size, log=log)
    if kind == "medium-expert":
        parts = [collect(env, k, out_dir, **kw) for k in ("medium", "expert")]
        from .data import D4RL_KEYS, _h5py
        h5py = _h5py()
        arrays = {}
        for p in parts:
            with h5py.File(p, "r") as f:
                for k in D4RL_KEYS:
                    arrays.setdefault(k, []).append(f[k][()])
        write_d4rl(path, {k: np.concatenate(v) for k, v in arrays.items()},
                   dict(env_id=ENV_IDS[env], dataset_kind=kind, parts=[p.name for p in parts]))
        return path
    level = kind.split("-")[0]
    thr = threshold or THRESHOLDS[level][env]
    model, state = train_sac(env, level, out_dir, threshold=thr, step_cap=step_cap or STEP_CAPS[level],
                             eval_every=eval_every, eval_episodes=eval_episodes, seed=seed,
                             learning_starts=learning_starts, buffer_size=buffer_size, log=log)
    arrays = replay_arrays(model) if kind.endswith("replay") else rollout_arrays(model, env, transitions)
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    rets = [float(r.sum()) for r in np.split(arrays["rewards"], ends[:-1] + 1)]
    attrs = dict(env_id=ENV_IDS[env], dataset_kind=kind, algorithm="SAC (stable-baselines3)", seed=seed,
                 env_steps_trained=int(model.num_timesteps), threshold=thr, stop_reason=state["stop_reason"],
                 eval_return_at_stop=state["evals"][-1][1])
    write_d4rl(path, arrays, attrs)
    log(f"wrote {path}: {len(arrays['rewards'])} transitions, {len(rets)} episodes, mean return "
        f"{np.mean(rets):.1f} (normalised {float(normalized_score(env, np.mean(rets))):.1f})")
    return path


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
