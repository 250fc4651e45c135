"""Apply a trained forecasting run to a series: `minrnn forecast RUN_DIR --csv PATH [--out F.csv] [--plot F.png]`.

The run's config.json records what a forecast needs besides the weights: the column names and the scaler
fitted on its training rows. The forecast reads the last L rows of the CSV (which must hold the run's columns,
by name; other columns are ignored), scales them with that scaler, and returns the next H rows in the
original units, dated by the series' most common step. The training data is not read again.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from . import data as D


def load_forecaster(run_dir: str | Path, which: str = "best"):
    """(config dict of config.json, ForecastConfig, model in eval mode) of a forecasting run."""
    from ... import checkpoint as ck
    from ...train import _load_ckpt
    from ...train_config import resolve_config
    from .task import build_forecaster
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"run directory: expected {cfg_path} to exist")
    saved = json.loads(cfg_path.read_text())
    if saved.get("task") != "forecast":
        raise ValueError(f"{run_dir}: expected a run of the forecast task, got task {saved.get('task')!r}")
    _, cfg, _ = resolve_config("forecast", None, saved["task_config"])
    model = build_forecaster(cfg, len(saved["data"]["columns"]))
    path, ckpt = _load_ckpt(run_dir, which)
    ck.load_model_state(model, ckpt["model"], str(path))
    return saved, cfg, model.eval()


def forecast_csv(run_dir: str | Path, csv_path: str | Path, which: str = "best"):
    """(series read, future dates (H,), forecast (H, C) in the CSV's units, column names, L) for the rows
    right after the last L rows of `csv_path`."""
    saved, cfg, model = load_forecaster(run_dir, which)
    cols, L = saved["data"]["columns"], cfg.L
    s = D.read_csv(csv_path, min_rows=L)
    missing = [c for c in cols if c not in s.columns]
    if missing:
        raise ValueError(f"{s.path}: expected the run's columns {cols}, missing {missing}")
    idx = [s.columns.index(c) for c in cols]
    scaler = D.Scaler(np.array(saved["data"]["scaler_mean"]), np.array(saved["data"]["scaler_std"]))
    x = torch.from_numpy(scaler.transform(s.values[-L:, idx]).astype(np.float32))[None]  # (1, L, C)
    with torch.no_grad():
        y = model(x)[0].double().numpy()  # (H, C), scaled
    return s, D.future_dates(s.dates, cfg.horizon), scaler.inverse(y), cols, L


def write_forecast_csv(path: str | Path, dates: list, values: np.ndarray, columns: list) -> None:
    from ...checkpoint import atomic_write_bytes
    lines = [",".join(["date"] + [_quote(c) for c in columns])]
    lines += [",".join([d.strftime("%Y-%m-%d %H:%M:%S")] + [repr(float(v)) for v in row])
              for d, row in zip(dates, values)]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def _quote(name: str) -> str:
    return f'"{name}"' if "," in name or '"' in name else name


def plot_forecast(path: str | Path, series, dates: list, values: np.ndarray, columns: list, L: int,
                  first: str = "OT", max_panels: int = 4, title: str = "") -> None:
    """History (the last L rows) and forecast of up to `max_panels` channels (`first` first), one panel each."""
    from ...extras import require
    require("matplotlib", "plot", "--plot", package="matplotlib").use("Agg")
    plt = require("matplotlib.pyplot", "plot", "--plot", package="matplotlib")
    order = sorted(range(len(columns)), key=lambda j: columns[j] != first)[:max_panels]
    fig, axes = plt.subplots(len(order), 1, figsize=(9, 2.2 * len(order)), sharex=True, squeeze=False)
    for ax, j in zip(axes[:, 0], order):
        hist = series.values[-L:, series.columns.index(columns[j])]
        ax.plot(series.dates[-L:], hist, color="0.3", lw=1.2, label="history")
        ax.plot([series.dates[-1]] + dates, np.r_[hist[-1], values[:, j]], color="C0", lw=1.5, label="forecast")
        ax.set_ylabel(columns[j])
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[0, 0].set_title(title or f"forecast of the next {len(dates)} rows after {series.path.name}")
    fig.autofmt_xdate()
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)


def _save_fig(fig, path: str | Path) -> None:
    """Write the figure to a temp file beside `path`, then rename it over (never a half-written PNG)."""
    import os
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
