"""`minrnn train forecast`, `minrnn eval --split test` and `minrnn forecast` as a user runs them (subprocess):
a generated CSV and ETTh1 for a few steps, forecasts in the original units, and clear errors (exit 2, nothing
written) for malformed CSVs."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minrnn.paths import find_data
from test_forecast_data import write_csv


def run(*args, timeout=300):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "minrnn", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


FAST = ["--steps", "6", "--eval-every", "3", "--no-progress", "--threads", "1"]


def _train(tmp_path, name, *args):
    r = run("train", "forecast", *args, *FAST, "--out-dir", str(tmp_path / "runs"), "--run-name", name)
    assert r.returncode == 0, r.stderr
    return tmp_path / "runs" / name


def test_generated_csv_end_to_end(tmp_path):
    p = write_csv(tmp_path / "series.csv", 500)
    run_dir = _train(tmp_path, "g", "--preset", "cpu", "--csv", str(p), "--seq-len", "48", "--horizon", "24",
                     "--model", "mingru")
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["data"]["columns"] == ["c0", "c1", "OT"] and cfg["data"]["borders"]["train"] == [0, 350]
    r = run("eval", str(run_dir), "--split", "test")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["windows"] == 100 + 48 - 48 - 24 + 1  # test rows [400 - L, 500): n - L - H + 1 windows
    assert np.isfinite(ev["mse"]) and np.isfinite(ev["mae"]) and ev["mse"] > 0
    out, png = tmp_path / "pred.csv", tmp_path / "pred.png"
    r = run("forecast", str(run_dir), "--csv", str(p), "--out", str(out), "--plot", str(png))
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["date", "c0", "c1", "OT"] and len(rows) == 1 + 24
    # the 500 hourly rows start 2020-01-01 00:00: the forecast starts at row 500's time
    assert rows[1][0] == "2020-01-21 20:00:00" and rows[-1][0] == "2020-01-22 19:00:00"
    assert all(np.isfinite(float(v)) for row in rows[1:] for v in row[1:])
    assert png.stat().st_size > 10_000
    assert not list(tmp_path.glob(".*.tmp*"))


def test_repeat_forecast_is_the_last_row_in_original_units(tmp_path):
    """repeat has no parameters: its run is one evaluation (steps 0); its forecast of the CSV is the CSV's last
    row exactly, so the scaling and its inverse are right."""
    p = write_csv(tmp_path / "series.csv", 400, C=2)
    run_dir = _train(tmp_path, "r", "--csv", str(p), "--seq-len", "24", "--horizon", "6", "--model", "repeat")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 0 and summary["params"] == 0
    r = run("forecast", str(run_dir), "--csv", str(p))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    last = p.read_text().strip().splitlines()[-1].split(",")[1:]
    assert lines[0] == "date,c0,OT" and len(lines) == 7
    for line in lines[1:]:
        np.testing.assert_allclose([float(v) for v in line.split(",")[1:]], [float(v) for v in last], rtol=1e-5)


def test_etth1_few_steps_and_test_split(tmp_path):
    try:
        find_data("forecasting/ETTh1.csv")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    run_dir = _train(tmp_path, "e", "--preset", "cpu", "--dataset", "ETTh1", "--horizon", "96", "--model", "minlstm")
    r = run("eval", str(run_dir), "--split", "test")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["windows"] == 2785 and ev["split"] == "test" and 0.2 < ev["mse"] < 3.0


def test_malformed_csv_is_a_clear_error_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    lines = write_csv(tmp_path / "ok.csv", 300).read_text().splitlines()
    lines[120] = lines[120].rsplit(",", 1)[0] + ",oops"
    bad.write_text("\n".join(lines) + "\n")
    r = run("train", "forecast", "--csv", str(bad), "--seq-len", "24", "--horizon", "6", *FAST,
            "--out-dir", str(tmp_path / "runs"))
    assert r.returncode == 2
    assert r.stderr.strip() == (f"minrnn train: error: {bad}, line 121, column 'OT': expected a number, got 'oops'")
    assert not (tmp_path / "runs").exists()
    r = run("train", "forecast", "--dataset", "ETTh9", *FAST, "--out-dir", str(tmp_path / "runs"))
    assert r.returncode == 2 and "dataset: expected one of" in r.stderr and "Traceback" not in r.stderr


def test_forecast_command_errors(tmp_path):
    p = write_csv(tmp_path / "series.csv", 400, C=2)
    run_dir = _train(tmp_path, "r", "--csv", str(p), "--seq-len", "24", "--horizon", "6", "--model", "repeat")
    other = write_csv(tmp_path / "other.csv", 400, C=3)  # columns c0, c1, OT: c0 and OT are there, fine
    assert run("forecast", str(run_dir), "--csv", str(other)).returncode == 0
    wrong = tmp_path / "wrong.csv"
    wrong.write_text(other.read_text().replace("date,c0,c1,OT", "date,a,b,c", 1))
    r = run("forecast", str(run_dir), "--csv", str(wrong))
    assert r.returncode == 2 and "expected the run's columns ['c0', 'OT'], missing ['c0', 'OT']" in r.stderr
    short = write_csv(tmp_path / "short.csv", 10, C=2)
    r = run("forecast", str(run_dir), "--csv", str(short))
    assert r.returncode == 2 and "expected at least 24 data rows, got 10" in r.stderr
    r = run("forecast", str(tmp_path), "--csv", str(p))
    assert r.returncode == 2 and "config.json to exist" in r.stderr
