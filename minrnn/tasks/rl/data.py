"""Offline RL data: D4RL hdf5 files and Minari datasets -> trajectories -> Decision-model training segments.

A trajectory is a dict of numpy arrays ``observations (T, obs_dim)``, ``actions (T, act_dim)``,
``rewards (T,)`` plus ``terminal`` (bool: the episode ended by termination, not by a time limit or the end
of the data). D4RL files are flat arrays with ``terminals``/``timeouts`` flags; an episode ends at the first
flagged transition (D4RL's own ``sequence_dataset`` convention), and unflagged transitions at the end of a
file form a last, cut episode. Minari stores one group per episode with T+1 observations.

Training segments follow the Decision Transformer: ``context`` consecutive steps of one episode with the
return-to-go R_t = sum_{t' >= t} r_t' (undiscounted, divided by ``rtg_scale``), the absolute timestep, and the
state normalised by the dataset mean/std. Episodes shorter than the context are right-padded (``mask`` False),
so padded positions come after real ones and a causal model's outputs on real positions do not see them.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # the first 8 bytes of an hdf5 file (no user block)
HDF5_SUFFIXES = (".hdf5", ".hdf", ".h5")
SOURCES = ("a D4RL hdf5 file (.hdf5/.hdf/.h5), a Minari dataset directory or its data/main_data.hdf5, "
           "or the id of a Minari dataset already on this machine")


def _h5py():
    from minrnn.extras import require
    return require("h5py", "rl", "reading hdf5 datasets", package="h5py")


def is_hdf5(path: str | os.PathLike) -> bool:
    """True if the file has the HDF5 signature (whatever its name): at offset 0, or after a user block at
    512, 1024, 2048, ... bytes, as the HDF5 format allows."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            off = 0
            while off + len(HDF5_SIGNATURE) <= size:
                f.seek(off)
                if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                    return True
                off = 512 if off == 0 else 2 * off
    except OSError:
        return False
    return False


def _open_h5(path: Path):
    """h5py.File(path, "r"), with an error naming the file and what was expected when it is not hdf5."""
    h5py = _h5py()
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: expected an hdf5 file, could not open it as one "
                         f"({' '.join(str(e).split())})") from None


def _array(group, key: str, where: str) -> np.ndarray:
    """group[key] as a numeric/bool numpy array; a group or a non-numeric dataset is a ValueError naming it."""
    h5py = _h5py()
    node = group[key]
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f"{where}: expected {key!r} to be an hdf5 dataset (an array), got a "
                         f"{'group' if isinstance(node, h5py.Group) else type(node).__name__}"
                         + (f" with keys {sorted(node.keys())}" if isinstance(node, h5py.Group) else ""))
    if node.dtype.kind not in "biuf":
        raise ValueError(f"{where}: expected {key!r} to hold numbers or booleans, got dtype {node.dtype}"
                         + (" (strings)" if node.dtype.kind in "OSU" else ""))
    return np.asarray(node[()])


def _finite(name: str, arr: np.ndarray, where: str) -> None:
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)).all(1))[0, 0])
        raise ValueError(f"{where}: expected finite {name}, got NaN/inf (first at row {bad})")


def load_d4rl(path: str | os.PathLike) -> list[dict]:
    """Read a D4RL-layout hdf5 file into trajectories. Raises ValueError on a malformed file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"D4RL file: expected an existing hdf5 file, got {path} (it does not exist)")
    with _open_h5(path) as f:
        missing = [k for k in D4RL_KEYS if k not in f]
        if missing:
            raise ValueError(f"{path}: expected D4RL keys {list(D4RL_KEYS)}, missing {missing} "
                             f"(found {sorted(f.keys())})")
        d = {k: _array(f, k, str(path)) for k in D4RL_KEYS}
        nxt = _array(f, "next_observations", str(path)) if "next_observations" in f else None  # optional
    n = len(d["observations"])
    lens = {k: len(v) for k, v in d.items()}
    if nxt is not None:
        lens["next_observations"] = len(nxt)
        if nxt.shape[1:] != d["observations"].shape[1:]:
            raise ValueError(f"{path}: expected next_observations of shape (N, {d['observations'].shape[1:]}), "
                             f"got {nxt.shape}")
    if len(set(lens.values())) != 1:
        raise ValueError(f"{path}: expected every key to have the same length, got {lens}")
    if n == 0:
        raise ValueError(f"{path}: expected at least one transition, got 0")
    for k, nd in (("observations", 2), ("actions", 2), ("rewards", 1), ("terminals", 1), ("timeouts", 1)):
        if d[k].ndim != nd:
            raise ValueError(f"{path}: expected {k} with {nd} dims, got shape {d[k].shape}")
    for k in ("observations", "actions", "rewards"):
        _finite(k, d[k].astype(np.float64), str(path))
    obs, act = d["observations"].astype(np.float32), d["actions"].astype(np.float32)
    rew = d["rewards"].astype(np.float32)
    term, tout = d["terminals"].astype(bool), d["timeouts"].astype(bool)
    ends = np.flatnonzero(term | tout)
    trajs, start = [], 0
    for e in list(ends) + ([n - 1] if len(ends) == 0 or ends[-1] != n - 1 else []):
        trajs.append(dict(observations=obs[start:e + 1], actions=act[start:e + 1], rewards=rew[start:e + 1],
                          terminal=bool(term[e])))
        start = e + 1
    return trajs


def load_minari(name_or_path: str | os.PathLike) -> list[dict]:
    """Read a Minari dataset: a local dataset id (via the `minari` package, no download) or a path to a
    Minari dataset directory / its ``data/main_data.hdf5`` (read directly with h5py)."""
    p = Path(name_or_path)
    if p.exists():
        f = p / "data" / "main_data.hdf5" if p.is_dir() else p
        if not f.exists():
            raise FileNotFoundError(f"Minari dataset: expected {f} inside the dataset directory")
        with _open_h5(f) as h:
            keys = sorted((k for k in h.keys() if k.startswith("episode_") and k[8:].isdigit()),
                          key=lambda k: int(k.split("_")[1]))
            if not keys:
                raise ValueError(f"{f}: expected Minari groups 'episode_<i>', got {sorted(h.keys())}")
            eps = [{k: _array(h[ek], k, f"{f}:{ek}") if k in h[ek] else None
                    for k in ("observations", "actions", "rewards", "terminations", "truncations")}
                   for ek in keys]
        names = keys
    else:
        if p.suffix.lower() in HDF5_SUFFIXES or p.is_absolute() or str(name_or_path).startswith((".", "~")):
            raise FileNotFoundError(f"data: {name_or_path} does not exist; pass --data PATH with {SOURCES}")
        from minrnn.extras import require
        minari = require("minari", "rl", f"{str(name_or_path)!r} is not an existing path; reading it as a "
                         "Minari dataset id", package="minari")
        try:
            ds = minari.load_dataset(str(name_or_path), download=False)
        except FileNotFoundError:  # minari says "Use download=True": no such option here, and we never download
            raise FileNotFoundError(f"data: {name_or_path} is neither an existing path nor a Minari dataset on this "
                                    f"machine (minrnn never downloads); pass --data PATH with {SOURCES}") from None
        eps, names = [], []
        for ep in ds.iterate_episodes():
            eps.append(dict(observations=ep.observations, actions=ep.actions, rewards=ep.rewards,
                            terminations=ep.terminations, truncations=ep.truncations))
            names.append(f"episode_{ep.id}")
    return [_minari_episode(ep, f"{name_or_path}:{nm}") for ep, nm in zip(eps, names)]


def _minari_episode(ep: dict, where: str) -> dict:
    missing = [k for k, v in ep.items() if v is None]
    if missing:
        raise ValueError(f"{where}: expected keys observations, actions, rewards, terminations, truncations; "
                         f"missing {missing}")
    obs, act = np.asarray(ep["observations"]), np.asarray(ep["actions"])
    if not isinstance(ep["observations"], np.ndarray) or obs.ndim != 2:
        raise ValueError(f"{where}: expected flat vector observations (T+1, obs_dim), got shape {obs.shape}")
    T = len(act)
    if T == 0 or act.ndim != 2:
        raise ValueError(f"{where}: expected actions of shape (T>=1, act_dim), got {act.shape}")
    lens = {"observations": len(obs), "rewards": len(ep["rewards"]), "terminations": len(ep["terminations"]),
            "truncations": len(ep["truncations"])}
    if lens != {"observations": T + 1, "rewards": T, "terminations": T, "truncations": T}:
        raise ValueError(f"{where}: expected T+1={T + 1} observations and T={T} rewards/terminations/"
                         f"truncations for T={T} actions, got {lens}")
    for k, v in (("observations", obs), ("actions", act), ("rewards", np.asarray(ep["rewards"]))):
        _finite(k, v.astype(np.float64), where)
    return dict(observations=obs[:-1].astype(np.float32), actions=act.astype(np.float32),
                rewards=np.asarray(ep["rewards"], np.float32), terminal=bool(np.asarray(ep["terminations"])[-1]))


def load_trajectories(source: str | os.PathLike) -> list[dict]:
    """D4RL hdf5 file or Minari dataset (id, directory or main_data.hdf5).

    A file is told to be hdf5 by its content (the HDF5 signature), so a D4RL file named ``*.hdf`` (or anything)
    is read too; it is a Minari file if it is named ``main_data.hdf5`` or holds ``episode_<i>`` groups and no
    ``observations``, else a D4RL file. A file without the signature is a ValueError naming it (one named
    ``*.hdf5``/``*.hdf``/``*.h5`` is said to be a broken hdf5 file); a path that does not exist is a
    FileNotFoundError saying so, unless it can be a Minari dataset id."""
    p = Path(source)
    if p.is_file():
        if not is_hdf5(p):
            if p.suffix.lower() in HDF5_SUFFIXES:
                raise ValueError(f"{p}: expected an hdf5 file (named {p.suffix}), got a file without the HDF5 "
                                 f"signature (starts with {_head(p)!r})")
            raise ValueError(f"{p}: expected {SOURCES}, got a file that is not hdf5 (starts with {_head(p)!r})")
        if p.name == "main_data.hdf5":
            return load_minari(p)
        with _open_h5(p) as f:
            minari_layout = "observations" not in f and any(k.startswith("episode_") for k in f.keys())
        return load_minari(p) if minari_layout else load_d4rl(p)
    return load_minari(source)


def _head(path: Path, n: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """R_t = sum_{t' >= t} r_t' (float64 accumulation, returned as float32)."""
    return np.cumsum(np.asarray(rewards, np.float64)[::-1])[::-1].astype(np.float32)


class SegmentSampler:
    """Draws Decision-model training segments from trajectories; a pure function of (trajectories, seed)."""

    def __init__(self, trajs: list[dict], context: int, rtg_scale: float = 1000.0, max_ep_len: int = 1000):
        if not trajs:
            raise ValueError("trajectories: expected at least one, got 0")
        if context < 1:
            raise ValueError(f"context: expected >= 1, got {context}")
        self.trajs, self.context, self.rtg_scale, self.max_ep_len = trajs, context, rtg_scale, max_ep_len
        dims = {(t["observations"].shape[1], t["actions"].shape[1]) for t in trajs}
        if len(dims) != 1:
            raise ValueError(f"trajectories: expected one (obs_dim, act_dim), got {sorted(dims)}")
        self.obs_dim, self.act_dim = dims.pop()
        obs = np.concatenate([t["observations"] for t in trajs]).astype(np.float64)
        self.state_mean = obs.mean(0).astype(np.float32)
        self.state_std = (obs.std(0) + 1e-6).astype(np.float32)
        self.rtg = [returns_to_go(t["rewards"]) for t in trajs]
        lens = np.array([len(t["rewards"]) for t in trajs])
        self.p = lens / lens.sum()  # DT samples episodes in proportion to their length
        self.n_transitions = int(lens.sum())

    def sample(self, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        """One segment per generator (so an example depends on its own generator only) ->
        states (B, K, obs), actions (B, K, act), rtg (B, K, 1), timesteps (B, K) int64, mask (B, K)."""
        K, batch_size = self.context, len(rngs)
        out = dict(states=np.zeros((batch_size, K, self.obs_dim), np.float32),
                   actions=np.zeros((batch_size, K, self.act_dim), np.float32),
                   rtg=np.zeros((batch_size, K, 1), np.float32), timesteps=np.zeros((batch_size, K), np.int64),
                   mask=np.zeros((batch_size, K), bool))
        for b, rng in enumerate(rngs):
            i = int(rng.choice(len(self.trajs), p=self.p))
            tr, T = self.trajs[i], len(self.trajs[i]["rewards"])
            s = int(rng.integers(0, max(T - K, 0) + 1))  # whole window inside the episode when T >= K
            n = min(K, T - s)
            out["states"][b, :n] = (tr["observations"][s:s + n] - self.state_mean) / self.state_std
            out["actions"][b, :n] = tr["actions"][s:s + n]
            out["rtg"][b, :n, 0] = self.rtg[i][s:s + n] / self.rtg_scale
            out["timesteps"][b, :n] = np.minimum(np.arange(s, s + n), self.max_ep_len - 1)
            out["mask"][b, :n] = True
        return out


def summarize(trajs: list[dict]) -> dict:
    """Episode count, transitions and return statistics (for logs and docs)."""
    rets = np.array([float(np.sum(t["rewards"], dtype=np.float64)) for t in trajs])
    return dict(episodes=len(trajs), transitions=int(sum(len(t["rewards"]) for t in trajs)),
                return_mean=float(rets.mean()), return_min=float(rets.min()), return_max=float(rets.max()))
