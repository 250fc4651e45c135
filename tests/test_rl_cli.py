"""`minrnn train rl` + `minrnn rl eval|plot|collect` as a user runs them (subprocess), on tiny generated data."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="h5py not installed (pip install 'minrnn[rl]')")
pytest.importorskip("gymnasium", reason="gymnasium not installed (pip install 'minrnn[rl]')")
pytest.importorskip("mujoco", reason="mujoco not installed (pip install 'minrnn[rl]')")

REPO = Path(__file__).resolve().parent.parent


def _cli(*args, cwd):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "minrnn.cli", *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _main(capsys, *args):
    """The same CLI in this process (cheaper than a subprocess for the second and later calls)."""
    from minrnn.cli import main
    capsys.readouterr()
    assert main([str(a) for a in args]) == 0
    return capsys.readouterr().out


def test_train_eval_plot(tmp_path, capsys):
    from minrnn.tasks.rl.data import load_d4rl
    from minrnn.tasks.rl.evaluate import normalized_score
    rng = np.random.default_rng(0)
    n = 200
    term = np.zeros(n, bool)
    term[[79, 199]] = True
    data = tmp_path / "hopper-tiny.hdf5"
    with h5py.File(data, "w") as f:
        for k, v in dict(observations=rng.normal(size=(n, 11)), actions=rng.uniform(-1, 1, (n, 3)),
                         rewards=rng.normal(size=n), terminals=term, timeouts=np.zeros(n, bool)).items():
            f.create_dataset(k, data=v.astype(np.float32) if v.dtype != bool else v)
    assert len(load_d4rl(data)) == 2
    common = ["--data", data, "--env", "hopper", "--d-model", 16, "--n-layers", 1, "--context", 5,
              "--max-ep-len", 20, "--val-every", 2, "--eval-episodes", 1, "--steps", 4, "--eval-every", 2,
              "--batch-size", 4, "--threads", 1, "--out-dir", tmp_path / "runs", "--no-progress"]
    _cli("train", "rl", "--model", "mingru", "--run-name", "mingru", *common, cwd=tmp_path)
    _main(capsys, "train", "rl", "--model", "dt", "--run-name", "dt", *common)
    out = json.loads(_cli("rl", "eval", tmp_path / "runs" / "mingru", "--episodes", 2, "--seeds", "0,1",
                          "--out", tmp_path / "ev.json", cwd=tmp_path).strip().splitlines()[-1])
    assert out["mode"] == "carried" and out["episodes"] == 4 and out["step"] == 4
    from minrnn.models.fast_step import available
    assert out["acting"] == ("native C step" if available() else out["acting"])
    assert out["acting"].startswith(("native C step", "PyTorch forward"))
    assert json.loads((tmp_path / "ev.json").read_text()) == out
    np.testing.assert_allclose(out["score_mean"], float(normalized_score("hopper", out["return_mean"])), rtol=1e-9)
    dt = json.loads(_main(capsys, "rl", "eval", tmp_path / "runs" / "dt", "--episodes", 1).splitlines()[-1])
    assert dt["mode"] == "window" and dt["model"] == "transformer" and dt["acting"].startswith("PyTorch forward")
    _main(capsys, "rl", "plot", tmp_path / "runs" / "mingru", tmp_path / "runs" / "dt", "--out", tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_collect_resumes(tmp_path, capsys):
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 not installed")
    from minrnn.tasks.rl.data import load_d4rl
    args = ["rl", "collect", "--env", "hopper", "--kind", "medium-replay", "--out", tmp_path, "--threshold", 1e9,
            "--eval-every", 60, "--eval-episodes", 1, "--learning-starts", 100, "--buffer-size", 1000]
    _cli(*args, "--step-cap", 120, cwd=tmp_path)
    first = load_d4rl(tmp_path / "hopper-medium-replay.hdf5")
    assert sum(len(t["rewards"]) for t in first) == 120
    out = _main(capsys, *args, "--step-cap", 180)  # a larger cap resumes from the checkpoint
    assert "resumed" in out
    state = json.loads((tmp_path / "hopper-medium-state.json").read_text())
    assert [e[0] for e in state["evals"]] == [60, 120, 180] and state["stop_reason"] == "step_cap"
    second = load_d4rl(tmp_path / "hopper-medium-replay.hdf5")
    assert sum(len(t["rewards"]) for t in second) == 180
    # the first 120 transitions are the same; the episode running at the resume point is cut there
    np.testing.assert_array_equal(np.concatenate([t["observations"] for t in second])[:120],
                                  np.concatenate([t["observations"] for t in first]))
    with h5py.File(tmp_path / "hopper-medium-replay.hdf5", "r") as f:
        assert f["timeouts"][119] or f["terminals"][119]
        assert f.attrs["env_steps_trained"] == 180
