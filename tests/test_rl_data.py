"""Offline RL data: D4RL-layout and Minari loaders (incl. malformed files), returns-to-go, segment sampling."""
from __future__ import annotations

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="h5py not installed (pip install 'minrnn[rl]')")

from minrnn.tasks.rl.data import SegmentSampler, load_d4rl, load_minari, load_trajectories, returns_to_go  # noqa: E402


def _episodes(seed=0, lens=(5, 3, 7), obs_dim=4, act_dim=2):
    rng = np.random.default_rng(seed)
    return [dict(observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
                 actions=rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
                 rewards=rng.normal(size=n).astype(np.float32)) for n in lens]


def write_d4rl(path, eps, ends=("terminal", "timeout", None), **override):
    """Flat D4RL layout; ends[i] flags the last transition of episode i (None: unflagged tail)."""
    cat = {k: np.concatenate([e[k] for e in eps]) for k in ("observations", "actions", "rewards")}
    n = len(cat["rewards"])
    term, tout = np.zeros(n, bool), np.zeros(n, bool)
    pos = np.cumsum([len(e["rewards"]) for e in eps]) - 1
    for p, kind in zip(pos, ends):
        if kind == "terminal":
            term[p] = True
        elif kind == "timeout":
            tout[p] = True
    d = dict(cat, terminals=term, timeouts=tout)
    d.update(override)
    with h5py.File(path, "w") as f:
        for k, v in d.items():
            if v is not None:
                f.create_dataset(k, data=v)
    return path


def test_d4rl_episodes_split_at_flags(tmp_path):
    eps = _episodes()
    trajs = load_d4rl(write_d4rl(tmp_path / "x.hdf5", eps))
    assert [len(t["rewards"]) for t in trajs] == [5, 3, 7]
    assert [t["terminal"] for t in trajs] == [True, False, False]  # timeout and unflagged tail are not terminal
    for t, e in zip(trajs, eps):
        for k in ("observations", "actions", "rewards"):
            np.testing.assert_array_equal(t[k], e[k])
    assert load_trajectories(tmp_path / "x.hdf5")[2]["rewards"].tolist() == eps[2]["rewards"].tolist()


@pytest.mark.parametrize("override, msg", [
    (dict(timeouts=None), "missing \\['timeouts'\\]"),
    (dict(rewards=np.zeros(14, np.float32)), "same length"),
    (dict(actions=np.zeros(15, np.float32)), "actions with 2 dims"),
    (dict(next_observations=np.zeros((14, 4), np.float32)), "same length.*'next_observations': 14"),
    (dict(next_observations=np.zeros((15, 3), np.float32)), "next_observations of shape"),
])
def test_d4rl_malformed(tmp_path, override, msg):
    with pytest.raises(ValueError, match=msg):
        load_d4rl(write_d4rl(tmp_path / "bad.hdf5", _episodes(), **override))


def test_d4rl_nan_reports_row(tmp_path):
    eps = _episodes()
    eps[1]["observations"][2, 1] = np.nan  # global row 5 + 2 = 7
    with pytest.raises(ValueError, match="finite observations.*row 7"):
        load_d4rl(write_d4rl(tmp_path / "nan.hdf5", eps))
    with pytest.raises(FileNotFoundError, match="expected an existing"):
        load_d4rl(tmp_path / "missing.hdf5")


def write_minari_file(path, eps, *, drop_last_obs=False):
    with h5py.File(path, "w") as f:
        for i, e in enumerate(eps):
            g = f.create_group(f"episode_{i}")
            final = np.zeros((1, e["observations"].shape[1]), np.float32) + 9.0
            obs = e["observations"] if drop_last_obs else np.concatenate([e["observations"], final])
            g.create_dataset("observations", data=obs)
            g.create_dataset("actions", data=e["actions"])
            g.create_dataset("rewards", data=e["rewards"])
            n = len(e["rewards"])
            g.create_dataset("terminations", data=np.arange(n) == n - 1 if i == 0 else np.zeros(n, bool))
            g.create_dataset("truncations", data=np.arange(n) == n - 1 if i != 0 else np.zeros(n, bool))
    return path


def test_minari_layout_file_and_dir(tmp_path):
    eps = _episodes(seed=1)
    (tmp_path / "ds" / "data").mkdir(parents=True)
    write_minari_file(tmp_path / "ds" / "data" / "main_data.hdf5", eps)
    for src in (tmp_path / "ds", tmp_path / "ds" / "data" / "main_data.hdf5"):
        trajs = load_trajectories(src)
        assert [t["terminal"] for t in trajs] == [True, False, False]
        for t, e in zip(trajs, eps):
            np.testing.assert_array_equal(t["observations"], e["observations"])  # final obs dropped
            np.testing.assert_array_equal(t["actions"], e["actions"])


def test_minari_malformed(tmp_path):
    with pytest.raises(ValueError, match="expected T\\+1=6 observations"):
        load_minari(write_minari_file(tmp_path / "a.hdf5", _episodes(), drop_last_obs=True))
    eps = _episodes()
    eps[2]["rewards"][0] = np.inf
    with pytest.raises(ValueError, match="episode_2: expected finite rewards"):
        load_minari(write_minari_file(tmp_path / "b.hdf5", eps))
    with h5py.File(tmp_path / "c.hdf5", "w") as f:
        f.create_dataset("observations", data=np.zeros(3))
    with pytest.raises(ValueError, match="expected Minari groups"):
        load_minari(tmp_path / "c.hdf5")


def test_minari_package_dataset(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari", reason="minari not installed")
    pytest.importorskip("gymnasium", reason="gymnasium not installed")
    from minari.data_collector.episode_buffer import EpisodeBuffer
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    eps = _episodes(seed=2, lens=(6, 4), obs_dim=3, act_dim=1)
    bufs = [EpisodeBuffer(id=i, observations=np.concatenate([e["observations"], e["observations"][-1:]]),
                          actions=e["actions"], rewards=e["rewards"].astype(np.float64),
                          terminations=np.zeros(len(e["rewards"]), bool),
                          truncations=np.arange(len(e["rewards"])) == len(e["rewards"]) - 1, infos={})
            for i, e in enumerate(eps)]
    with pytest.warns(UserWarning):  # minari warns about the missing description/eval env
        minari.create_dataset_from_buffers("test/pendulum-tiny-v0", bufs, env="Pendulum-v1", algorithm_name="t")
    trajs = load_trajectories("test/pendulum-tiny-v0")  # a dataset id, read through the minari package
    assert [len(t["rewards"]) for t in trajs] == [6, 4] and not any(t["terminal"] for t in trajs)
    for t, e in zip(trajs, eps):
        np.testing.assert_array_equal(t["observations"], e["observations"])
        np.testing.assert_array_equal(t["actions"], e["actions"])
        np.testing.assert_allclose(t["rewards"], e["rewards"])


def test_returns_to_go():
    np.testing.assert_allclose(returns_to_go(np.array([1.0, 2.0, 3.0])), [6.0, 5.0, 3.0])


def test_segment_sampler_values_and_padding():
    eps = _episodes(lens=(30, 4))
    for e in eps:
        e["terminal"] = False
    s = SegmentSampler(eps, context=6, rtg_scale=10.0)
    allobs = np.concatenate([e["observations"] for e in eps]).astype(np.float64)
    np.testing.assert_allclose(s.state_mean, allobs.mean(0), rtol=1e-5)
    seen_short = seen_long = False
    for seed in range(40):
        b = s.sample([np.random.default_rng(seed)])
        ts = b["timesteps"][0]
        ep = eps[0] if b["mask"][0].all() and len(eps[1]["rewards"]) < 6 else eps[1]
        n = int(b["mask"][0].sum())
        start = int(ts[0])
        np.testing.assert_array_equal(ts[:n], np.arange(start, start + n))
        np.testing.assert_allclose(b["actions"][0, :n], ep["actions"][start:start + n])
        np.testing.assert_allclose(b["states"][0, :n] * s.state_std + s.state_mean,
                                   ep["observations"][start:start + n], atol=1e-5)
        rtg = np.cumsum(ep["rewards"][::-1].astype(np.float64))[::-1][start:start + n] / 10.0
        np.testing.assert_allclose(b["rtg"][0, :n, 0], rtg, rtol=1e-5)
        assert (b["states"][0, n:] == 0).all() and (b["actions"][0, n:] == 0).all()
        seen_short |= n == 4
        seen_long |= n == 6
    assert seen_short and seen_long
    # an example depends on its own generator only
    two = s.sample([np.random.default_rng(3), np.random.default_rng(5)])
    one = s.sample([np.random.default_rng(5)])
    np.testing.assert_array_equal(two["states"][1], one["states"][0])


def test_standin_hopper_medium_matches_its_readme():
    from minrnn.paths import find_data
    from minrnn.tasks.rl.data import summarize
    try:
        path = find_data("locomotion/hopper-medium-replay.hdf5")
    except FileNotFoundError:
        pytest.skip("../shared/data/locomotion stand-ins not present")
    s = summarize(load_d4rl(path))  # the README's table: 139,999 transitions, 862 episodes, mean return 422.6
    assert (s["transitions"], s["episodes"]) == (139_999, 862)
    assert round(s["return_mean"], 1) == 422.6 and round(s["return_max"], 1) == 2310.9
