"""Forecasting data: the TSLib protocol (split sizes, window counts, scaler on train rows only), the exact
metrics of `evaluate`, and clear errors for malformed CSVs (naming the file and the row or column)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from minrnn.paths import find_data
from minrnn.tasks.forecast import data as D
from minrnn.tasks.forecast.models import Repeat
from minrnn.tasks.forecast.task import ForecastConfig, ForecastTask


def _shared(name: str) -> Path:
    try:
        return find_data(f"forecasting/{name}.csv")
    except FileNotFoundError:
        pytest.skip("../shared/data/forecasting is not here")


def write_csv(path: Path, n: int, C: int = 3, seed: int = 0, start="2020-01-01 00:00:00") -> Path:
    """A small series: n hourly rows of C channels (sines + noise), a `date` column first."""
    from datetime import datetime, timedelta
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    v = np.sin(2 * np.pi * t / 24 + np.arange(C)) * (1 + np.arange(C)) + 0.1 * rng.standard_normal((n, C)) + 5
    t0 = datetime.fromisoformat(start)
    cols = [f"c{j}" for j in range(C - 1)] + ["OT"]
    lines = ["date," + ",".join(cols)]
    lines += [(t0 + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S") + "," + ",".join(f"{x:.6f}" for x in row)
              for i, row in enumerate(v)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("name,L,H,want", [
    # the figures for ETTh1; the others follow the README's rules (ETTm: borders x 4; others 70/10/20)
    ("ETTh1", 96, 96, (8449, 2785, 2785)),
    ("ETTh1", 96, 720, (7825, 2161, 2161)),
    ("ETTm1", 96, 96, (34369, 11425, 11425)),
    ("weather", 96, 96, (36696, 5175, 10444)),
    ("exchange_rate", 96, 96, (5120, 665, 1422)),
    ("national_illness", 36, 24, (617, 74, 170)),
])
def test_split_and_window_counts(name, L, H, want):
    tk = ForecastTask(ForecastConfig(dataset=name, seq_len=L, horizon=H, model="repeat"))
    assert tuple(tk.n_windows(s) for s in ("train", "val", "test")) == want


def test_ett_borders_are_fixed():
    assert D.borders("ETTh1", 17420, 96) == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}
    assert D.borders("ETTm2", 69680, 96) == {"train": (0, 34560), "val": (34464, 46080), "test": (45984, 57600)}
    with pytest.raises(ValueError, match="at least 14400 rows"):
        D.borders("ETTh2", 14000, 96)


def test_scaler_sees_only_train_rows(tmp_path):
    """Changing a validation or test row leaves the scaler (and the train data) exactly as it was; changing a
    train row does not."""
    p = write_csv(tmp_path / "s.csv", 400)
    base = ForecastTask(ForecastConfig(csv=str(p), seq_len=24, horizon=12, model="repeat"))
    a, b = base.borders["train"]
    assert (a, b) == (0, 280)
    lines = p.read_text().splitlines()
    for row, changes in ((300, False), (390, False), (279, True), (0, True)):
        fields = lines[1 + row].split(",")
        fields[1] = "1000.0"
        q = tmp_path / f"s{row}.csv"
        q.write_text("\n".join(lines[:1 + row] + [",".join(fields)] + lines[2 + row:]) + "\n")
        tk = ForecastTask(ForecastConfig(csv=str(q), seq_len=24, horizon=12, model="repeat"))
        same = np.array_equal(tk.scaler.mean, base.scaler.mean) and np.array_equal(tk.scaler.std, base.scaler.std)
        assert same != changes, row
    # the scaler is the train rows' mean and population std, and the series is scaled with it
    raw = D.read_csv(p).values
    np.testing.assert_allclose(base.scaler.mean, raw[:280].mean(0), rtol=1e-12)
    np.testing.assert_allclose(base.scaler.std, raw[:280].std(0), rtol=1e-12)
    np.testing.assert_allclose(base.data.numpy(), (raw - raw[:280].mean(0)) / raw[:280].std(0), rtol=1e-5, atol=1e-6)


def test_evaluate_is_exact_over_every_test_window():
    """evaluate(repeat, test) equals MSE/MAE computed here with numpy from the raw CSV: every one of the 2785
    windows, all 96 steps and 7 channels, on the train-scaled values."""
    raw = D.read_csv(_shared("ETTh1")).values
    z = (raw - raw[:8640].mean(0)) / raw[:8640].std(0)
    starts = np.arange(11424, 14400 - 192 + 1)
    assert len(starts) == 2785
    last = z[starts + 95][:, None, :]  # (n, 1, 7)
    fut = np.stack([z[s + 96:s + 192] for s in starts])  # (n, 96, 7)
    want_mse, want_mae = ((fut - last) ** 2).mean(), np.abs(fut - last).mean()
    tk = ForecastTask(ForecastConfig(dataset="ETTh1", horizon=96, model="repeat"))
    got = tk.evaluate(Repeat(96), "test")
    assert got["windows"] == 2785
    # float32 data against a float64 reference: relative error ~1e-7 per value, summed in float64
    assert abs(got["mse"] - want_mse) < 1e-5 * want_mse and abs(got["mae"] - want_mae) < 1e-5 * want_mae


def test_val_subsample_never_applies_to_test():
    tk = ForecastTask(ForecastConfig(dataset="ETTh1", horizon=96, model="repeat", eval_windows=100))
    assert tk.evaluate(Repeat(96), "val")["windows"] == 100
    assert tk.evaluate(Repeat(96), "test")["windows"] == 2785


def test_train_batches_are_pure_and_sliceable():
    tk = ForecastTask(ForecastConfig(dataset="ETTh1", horizon=96, model="repeat"))
    x, y = tk.train_batch(5, 0, 0, 8)
    x2, y2 = tk.train_batch(5, 0, 4, 8)
    assert x.shape == (8, 96, 7) and y.shape == (8, 96, 7)
    assert torch.equal(x[4:], x2) and torch.equal(y[4:], y2)
    assert not torch.equal(x, tk.train_batch(6, 0, 0, 8)[0])
    # every training window lies inside the train rows [0, 8640): input and target
    last = int(tk.borders["train"][1])
    assert tk.n_windows("train") + 96 + 96 - 1 == last


def test_univariate_features(tmp_path):
    p = write_csv(tmp_path / "u.csv", 300)
    tk = ForecastTask(ForecastConfig(csv=str(p), seq_len=24, horizon=12, features="S", target="c1", model="repeat"))
    assert tk.columns == ["c1"] and tk.data.shape == (300, 1)
    with pytest.raises(ValueError, match="target: expected a column of .*got 'nope'"):
        ForecastTask(ForecastConfig(csv=str(p), seq_len=24, horizon=12, features="S", target="nope", model="repeat"))


def _bad(tmp_path, text: str) -> Path:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,match", [
    ("", "empty file"),
    ("time_of_day,a\n1,2\n", "first column to be the date column"),
    ("date\n2020-01-01,\n", "expected at least one numeric column"),
    ("date,a,b\n2020-01-01,1,2\n2020-01-02,1,x\n", r"line 3, column 'b': expected a number, got 'x'"),
    ("date,a,b\n2020-01-01,1,2\n2020-01-02,,2\n", r"line 3, column 'a': expected a number, got a missing value"),
    ("date,a,b\n2020-01-01,1,nan\n", r"line 2, column 'b': expected a finite number"),
    ("date,a,b\n2020-01-01,1,2\n2020-01-02,1\n", r"line 3: expected 3 fields"),
    ("date,a\nyesterday,1\n", r"line 2: expected a date in column 'date', got 'yesterday'"),
    ("date,a\n2020-01-02,1\n2020-01-01,1\n", r"line 3: expected dates in increasing order"),
    ("date,a,a\n2020-01-01,1,2\n", "distinct column names"),
])
def test_malformed_csv_errors(tmp_path, text, match):
    p = _bad(tmp_path, text)
    with pytest.raises(ValueError, match=match) as e:
        D.read_csv(p)
    assert str(p) in str(e.value)


def test_too_short_and_unknown(tmp_path):
    p = write_csv(tmp_path / "short.csv", 100)
    with pytest.raises(ValueError, match=r"short.csv: expected at least 108 data rows, got 100"):
        ForecastTask(ForecastConfig(csv=str(p), seq_len=96, horizon=12, model="repeat"))
    with pytest.raises(ValueError, match=r"the val split .* has no window"):
        ForecastTask(ForecastConfig(csv=str(p), seq_len=20, horizon=12, model="repeat"))
    with pytest.raises(ValueError, match=r"dataset: expected one of .*got 'ETTh3'"):
        ForecastConfig(dataset="ETTh3")
    with pytest.raises(FileNotFoundError, match="missing"):
        ForecastTask(ForecastConfig(csv=str(tmp_path / "none.csv"), model="repeat"))
    with pytest.raises(ValueError, match=r"model: expected one of .*got 'prophet'"):
        ForecastConfig(model="prophet")


def test_date_formats_of_the_benchmark_files():
    assert str(D.parse_date("1990/1/1 0:00")) == "1990-01-01 00:00:00"  # exchange_rate
    assert str(D.parse_date("2016-07-01 00:15:00")) == "2016-07-01 00:15:00"  # ETT
    assert D.parse_date("not a date") is None
    from datetime import datetime, timedelta
    ds = [datetime(2020, 1, 1) + timedelta(days=7 * i) for i in range(10)]
    assert D.future_dates(ds, 2) == [datetime(2020, 3, 11), datetime(2020, 3, 18)]


def test_presets_follow_the_dataset_size():
    """The presets count passes over the train windows: ETTh1 at H = 96 has 8449, 265 batches of 32."""
    from minrnn.train_config import resolve_config
    _, tc, trc = resolve_config("forecast", "cpu", {"model": "mingru", "dataset": "ETTh1"})
    assert (trc.steps, trc.eval_every, trc.time_budget, tc.d_model, tc.highway) == (1590, 66, 75.0, 32, True)
    _, tc, trc = resolve_config("forecast", "paper", {"model": "mingru", "dataset": "ETTh1"})
    assert (trc.steps, trc.eval_every, trc.patience, tc.eval_windows) == (2650, 265, 3, 0)
    _, tc, trc = resolve_config("forecast", "cpu", {"model": "dlinear", "dataset": "ETTh1", "horizon": 720})
    assert (trc.steps, trc.lr, trc.weight_decay) == (10 * 245, 1e-4, 0.0)
    _, tc, trc = resolve_config("forecast", "cpu", {"model": "dlinear", "dataset": "national_illness", "horizon": 24})
    assert (trc.steps, trc.lr, tc.L) == (10 * 20, 1e-2, 36)  # 617 windows: 20 steps a pass
    # the other tasks keep their own model choices
    from minrnn.tasks.shakespeare import ShakespeareConfig
    with pytest.raises(ValueError, match="model: expected one of"):
        ShakespeareConfig(model="dlinear")
