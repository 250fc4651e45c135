"""Bad input and missing extras around offline RL and plotting: one-line errors (exit 2), never a traceback.

Missing optional modules are simulated with ``sys.modules[name] = None`` (``import name`` then raises
ImportError), so these tests run with the extras installed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="h5py not installed (pip install 'minrnn[rl]')")

from minrnn.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RL_HINT = "pip install 'minrnn[rl]'"
PLOT_HINT = "pip install 'minrnn[plot]'"


def write_d4rl(path, lens=(30, 20, 40, 25), obs_dim=11, act_dim=3, seed=0, **override):
    """A D4RL-layout file (Hopper's dims) whose episodes end with a terminal flag; `override` replaces keys."""
    rng = np.random.default_rng(seed)
    n = sum(lens)
    term = np.zeros(n, bool)
    term[np.cumsum(lens) - 1] = True
    d = dict(observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
             actions=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
             rewards=rng.normal(size=n).astype(np.float32), terminals=term, timeouts=np.zeros(n, bool))
    d.update(override)
    with h5py.File(path, "w") as f:
        for k, v in d.items():
            if isinstance(v, str) and v == "group":
                g = f.create_group(k)
                g.create_dataset("qpos", data=np.zeros((n, 2), np.float32))
            else:
                f.create_dataset(k, data=v)
    return path


def cli_error(capsys, *args) -> str:
    """Run the CLI in-process; expect exit 2 and exactly one stderr line, `minrnn CMD: error: ...`."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"minrnn {args[0]}: error: "), err
    assert "Traceback" not in err and "During handling" not in err
    return lines[0]


TINY = ["--d-model", 8, "--n-layers", 1, "--context", 4, "--max-ep-len", 50, "--batch-size", 2, "--steps", 1,
        "--eval-every", 1, "--eval-batches", 1, "--threads", 1, "--no-progress"]


# 1. missing extras: one line with the install command --------------------------------------------------------

def test_train_rl_without_h5py(tmp_path, capsys, monkeypatch):
    data = write_d4rl(tmp_path / "hopper-tiny.hdf5")
    monkeypatch.setitem(sys.modules, "h5py", None)
    line = cli_error(capsys, "train", "rl", "--data", data, "--out-dir", tmp_path / "runs", *TINY)
    assert "h5py" in line and RL_HINT in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("module", ["gymnasium", "mujoco"])
def test_train_rl_with_rollouts_without_gymnasium_fails_before_training(tmp_path, capsys, monkeypatch, module):
    data = write_d4rl(tmp_path / "hopper-tiny.hdf5")
    monkeypatch.setitem(sys.modules, module, None)
    line = cli_error(capsys, "train", "rl", "--data", data, "--eval-episodes", 1, "--out-dir", tmp_path / "runs",
                     *TINY)
    assert module in line and RL_HINT in line and "--eval-episodes" in line
    assert not (tmp_path / "runs").exists()  # said before a run directory is made


def test_train_rl_minari_id_without_minari(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)
    line = cli_error(capsys, "train", "rl", "--data", "D4RL/door/human-v2", "--out-dir", tmp_path / "runs", *TINY)
    assert "'D4RL/door/human-v2' is not an existing path" in line and "minari" in line and RL_HINT in line


@pytest.mark.parametrize("module", ["gymnasium", "mujoco"])
def test_rl_eval_without_gymnasium(tmp_path, capsys, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)
    line = cli_error(capsys, "rl", "eval", tmp_path, "--episodes", 1)
    assert module in line and RL_HINT in line


@pytest.mark.parametrize("module", ["stable_baselines3", "gymnasium", "h5py"])
def test_rl_collect_without_its_packages_writes_nothing(tmp_path, capsys, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)
    line = cli_error(capsys, "rl", "collect", "--env", "hopper", "--kind", "medium", "--out", tmp_path / "out")
    assert module in line and RL_HINT in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cmd", [["plot"], ["rl", "plot"]])
def test_plots_without_matplotlib(tmp_path, capsys, monkeypatch, cmd):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    line = cli_error(capsys, *cmd, tmp_path)
    assert "matplotlib" in line and PLOT_HINT in line


# 2. what --data may be -------------------------------------------------------------------------------------

def test_text_file_as_data(tmp_path, capsys):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello\n")
    line = cli_error(capsys, "train", "rl", "--data", txt, "--out-dir", tmp_path / "runs", *TINY)
    assert str(txt) in line and "not hdf5" in line and "D4RL hdf5 file" in line
    fake = tmp_path / "fake.hdf5"
    fake.write_text("hello\n")
    line = cli_error(capsys, "train", "rl", "--data", fake, "--out-dir", tmp_path / "runs", *TINY)
    assert str(fake) in line and "HDF5 signature" in line


@pytest.mark.parametrize("name", ["hopper-medium.hdf", "hopper-medium.h5", "hopper-medium.dat"])
def test_hdf5_is_detected_by_content(tmp_path, name):
    from minrnn.tasks.rl.data import is_hdf5, load_trajectories
    from minrnn.tasks.rl.task import RLConfig, RLTask
    src = write_d4rl(tmp_path / "x.hdf5")
    dst = tmp_path / name
    dst.write_bytes(src.read_bytes())
    assert is_hdf5(dst) and not is_hdf5(tmp_path / "missing.hdf")
    trajs = load_trajectories(dst)  # as D4RL, not as a Minari dataset
    assert [len(t["rewards"]) for t in trajs] == [30, 20, 40, 25] and all(t["terminal"] for t in trajs)
    task = RLTask(RLConfig(data=str(dst), env="hopper", val_every=2, d_model=8, n_layers=1))
    assert task.n_episodes == 4 and task.train_data.n_transitions == 70


def test_missing_path_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    for missing in (tmp_path / "nope.hdf5", tmp_path / "nope"):
        line = cli_error(capsys, "train", "rl", "--data", missing, "--out-dir", tmp_path / "runs", *TINY)
        assert f"{missing} does not exist" in line and "--data PATH" in line and "download" not in line
    pytest.importorskip("minari", reason="minari not installed")
    monkeypatch.chdir(tmp_path)
    line = cli_error(capsys, "train", "rl", "--data", "no-such-id", "--out-dir", tmp_path / "runs", *TINY)
    assert "no-such-id is neither an existing path nor a Minari dataset" in line and "--data PATH" in line
    assert "download=True" not in line


@pytest.mark.parametrize("value, msg", [
    ("group", "expected 'observations' to be an hdf5 dataset (an array), got a group with keys ['qpos']"),
    (np.array(["a", "b"] * 57, dtype="S1"), "expected 'observations' to hold numbers or booleans, got dtype |S1 "
                                           "(strings)"),
    (np.array(["a"] * 115, dtype=h5py.string_dtype()), "expected 'observations' to hold numbers or booleans"),
])
def test_observations_not_an_array(tmp_path, capsys, value, msg):
    from minrnn.tasks.rl.data import load_trajectories
    bad = write_d4rl(tmp_path / "bad.hdf5", observations=value)
    with pytest.raises(ValueError) as e:
        load_trajectories(bad)
    assert str(e.value).startswith(f"{bad}: {msg}")
    line = cli_error(capsys, "train", "rl", "--data", bad, "--out-dir", tmp_path / "runs", *TINY)
    assert str(bad) in line and "'observations'" in line


def test_minari_group_observations(tmp_path):
    from minrnn.tasks.rl.data import load_minari
    f = tmp_path / "main_data.hdf5"
    with h5py.File(f, "w") as h:
        g = h.create_group("episode_0")
        g.create_group("observations").create_dataset("pos", data=np.zeros((3, 2)))
        for k, v in dict(actions=np.zeros((2, 1)), rewards=np.zeros(2), terminations=np.zeros(2, bool),
                         truncations=np.zeros(2, bool)).items():
            g.create_dataset(k, data=v)
    with pytest.raises(ValueError, match=r"main_data.hdf5:episode_0: expected 'observations' to be an hdf5 "
                                         r"dataset \(an array\), got a group"):
        load_minari(f)


# 3. the validation split is never empty -------------------------------------------------------------------

@pytest.mark.parametrize("val_every", [0, 1, -3])
def test_val_every_below_two(val_every):
    from minrnn.tasks.rl.task import RLConfig
    with pytest.raises(ValueError, match=rf"val_every \(--val-every\): expected >= 2 .*got {val_every}$"):
        RLConfig(val_every=val_every)


def test_fewer_episodes_than_val_every(tmp_path, capsys):
    from minrnn.tasks.rl.task import RLConfig, RLTask
    data = write_d4rl(tmp_path / "four.hdf5")
    with pytest.raises(ValueError, match=r"has 4 episode\(s\), so val_every=5 holds out none .* "
                                         r"set --val-every between 2 and 4"):
        RLTask(RLConfig(data=str(data), val_every=5))
    one = write_d4rl(tmp_path / "one.hdf5", lens=(50,))
    with pytest.raises(ValueError, match=r"has 1 episode\(s\).*at least 2 episodes"):
        RLTask(RLConfig(data=str(one), val_every=2))
    line = cli_error(capsys, "train", "rl", "--data", data, "--val-every", 0, "--out-dir", tmp_path / "runs", *TINY)
    assert "val_every" in line and "got 0" in line
    line = cli_error(capsys, "train", "rl", "--data", data, "--val-every", 20, "--out-dir", tmp_path / "runs", *TINY)
    assert "has 4 episode(s), so val_every=20" in line


def test_validation_uses_held_out_episodes(tmp_path):
    import torch

    from minrnn.tasks.rl.task import RLConfig, RLTask
    task = RLTask(RLConfig(data=str(write_d4rl(tmp_path / "four.hdf5")), val_every=2, d_model=8, n_layers=1,
                           context=4, eval_batches=1))
    assert task.train_data.n_transitions == 30 + 40 and task.val_data.n_transitions == 20 + 25
    np.testing.assert_array_equal(task.val_data.state_mean, task.train_data.state_mean)
    model = task.build_model().eval()
    torch.manual_seed(0)
    assert task.evaluate(model, "val")["loss"] != task.evaluate(model, "train")["loss"]


# 4. rl_table.py is a proper CLI -----------------------------------------------------------------------------

def test_rl_table_help_and_bad_folder(tmp_path):
    script = REPO / "scripts" / "experiments" / "rl_table.py"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    r = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and r.stdout.startswith("usage: rl_table.py") and "runs_dir" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, script, tmp_path / "nope"], capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode == 2 and "expected an existing folder" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, script, tmp_path], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and "no eval_rl*.json under" in r.stderr


# 5. minrnn plot: output next to the runs, distinct labels ---------------------------------------------------

def _run_dir(path: Path, model="mingru", params=12_345, rl=False):
    path.mkdir(parents=True)
    recs = [{"kind": "train", "step": s, "time": 1.0 * s, "loss": 2.0 / s} for s in (1, 2, 3, 4)]
    recs += [{"kind": "eval", "step": s, "time": 1.0 * s, "val_loss": 1.5 / s,
              **({"val_score": 10.0 * s} if rl else {})} for s in (2, 4)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    cfg = {"model": model, **({"env": "hopper", "dataset": "medium"} if rl else {})}
    (path / "config.json").write_text(json.dumps({"task": "rl" if rl else "toy", "task_config": cfg,
                                                  "params": params}))
    return path


def _legend_labels(monkeypatch, fn):
    plt = pytest.importorskip("matplotlib.pyplot")
    figs = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figs.append(fig), real_close(fig)))
    fn()
    return [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()]


def test_plot_default_out_and_unique_labels(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    a, b = _run_dir(tmp_path / "runs" / "seed0"), _run_dir(tmp_path / "runs" / "seed1")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    labels = _legend_labels(monkeypatch, lambda: main(["plot", str(a), str(b)]))
    assert capsys.readouterr().out.strip() == f"wrote {a / 'curves.png'}"
    assert (a / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "curves.png").exists()
    assert labels == ["seed0: mingru (0.01M) val_loss", "seed1: mingru (0.01M) val_loss"]
    # --out still decides; runs that share a directory name are told apart by their paths
    c = _run_dir(tmp_path / "other" / "seed0")
    labels = _legend_labels(monkeypatch, lambda: main(["plot", str(a), str(c), "--out", "x/y.png"]))
    assert (tmp_path / "x" / "y.png").is_file() and len(set(labels)) == 2
    assert labels == [f"{a}: mingru (0.01M) val_loss", f"{c}: mingru (0.01M) val_loss"]
    from minrnn.commands.plot import labels as run_labels
    assert run_labels([str(a), str(a)]) == [f"{a}: mingru (0.01M)", f"{a} #2: mingru (0.01M)"]


def test_rl_plot_default_out(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    a, b = _run_dir(tmp_path / "r0", rl=True), _run_dir(tmp_path / "r1", model="transformer", rl=True)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["rl", "plot", str(a), str(b)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {a / 'rl_score.png'}"
    assert (a / "rl_score.png").is_file() and not (tmp_path / "rl_score.png").exists()
