"""`minrnn train forecast`: long-horizon forecasting of multivariate series (ETT, weather, exchange_rate,
national_illness, or any CSV), the Time-Series-Library protocol (`data.py`), the forecasters of `models.py`.

Training windows are drawn uniformly from the train split's stride-1 windows, as a pure function of
(seed, step, example); the loss is the MSE on the scaled series. `evaluate` is exact: MSE and MAE over
every window of the split (no drop_last, no shuffle), every step and channel, summed in float64; during
training `eval_windows` evenly spaced validation windows may stand in for all of them (the validation split
only, which selects the checkpoint; the test split is always evaluated in full).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ...validate import check_choice, check_int
from ..base import Task, TaskConfig, example_ints, model_kwargs
from . import data as D
from .models import MODELS, RNN_MODELS, DLinear, ITransformer, Repeat, RNNForecaster


@dataclass
class ForecastConfig(TaskConfig):
    MODELS: ClassVar[tuple] = MODELS
    model: str = "mingru"          # forecaster: mingru | minlstm | gru | lstm | mamba | dlinear | itransformer | repeat
    dataset: str = "ETTh1"         # benchmark series: ETTh1 ETTh2 ETTm1 ETTm2 weather exchange_rate national_illness
    data_dir: str = ""             # folder of the benchmark CSVs (default: $MINRNN_DATA/forecasting, ../shared/data/forecasting)
    csv: str = ""                  # your own series instead: a CSV of a date column then numeric columns (70/10/20 split)
    features: str = "M"            # M: every column in and out (multivariate) | S: the target column only
    target: str = "OT"             # target column (features S; the column the forecast plot shows first)
    seq_len: int = 0               # input window L in rows (0: the benchmark's 96; national_illness 36)
    horizon: int = 96              # forecast horizon H in rows
    patch_len: int = 16            # RNN forecasters: rows per token (patch_len = patch_stride = 1: no patching)
    patch_stride: int = 8          # RNN forecasters: rows between patch starts
    revin: bool = True             # per-window instance normalisation (RNN forecasters and iTransformer)
    channel_independent: bool = True  # RNN forecasters: every channel its own sequence, weights shared
    decoder: str = "direct"        # RNN forecasters: direct (linear head to all H steps) | autoregressive
    highway: bool = True           # RNN forecasters: add a linear window -> horizon map (LSTNet's highway)
    moving_avg: int = 25           # DLinear: moving-average width of the trend
    d_ff: int = 0                  # iTransformer feed-forward width (0: 4 * d_model)
    eval_windows: int = 0          # validation windows per evaluation while training (0: all; evenly spaced)
    eval_batch_size: int = 256     # windows per evaluation forward pass

    def __post_init__(self):
        super().__post_init__()
        check_choice("features", self.features, ("M", "S"))
        check_choice("decoder", self.decoder, ("direct", "autoregressive"))
        check_int("seq_len", self.seq_len, 0)
        for name in ("horizon", "patch_len", "patch_stride", "moving_avg", "eval_batch_size"):
            check_int(name, getattr(self, name), 1)
        check_int("d_ff", self.d_ff, 0)
        check_int("eval_windows", self.eval_windows, 0)
        if self.patch_stride > self.patch_len:
            raise ValueError(f"patch_stride: expected <= patch_len = {self.patch_len} (patches must cover every "
                             f"row), got {self.patch_stride}")
        if not self.csv and self.dataset not in D.DATASETS:
            raise ValueError(f"dataset: expected one of {D.DATASETS} (or --csv PATH), got {self.dataset!r}")

    @property
    def L(self) -> int:
        return self.seq_len or D.default_seq_len(self.dataset if not self.csv else "custom")


RNN_HIDDEN = {"gru": 40, "lstm": 36}  # cpu preset: within 5% of the minGRU forecaster's parameters at H = 96 and 720
MAMBA_MLP = {"cpu": 0.5, "paper": 1.5}  # Mamba's MLP ratio: within 10% of the minGRU forecaster at H = 96 and 720
# cpu preset sizes; a run is bounded by `time_budget` seconds of one core (see docs/forecasting.md)
_CPU = {
    "mingru": dict(d_model=32, n_layers=2, expansion=2.0, mlp_ratio=2.0, conv_kernel=0, dropout=0.0, highway=True,
                   lr=2e-3),
    "minlstm": dict(d_model=32, n_layers=2, expansion=2.0, mlp_ratio=2.0, conv_kernel=0, dropout=0.0, highway=True,
                    lr=2e-3),
    "gru": dict(d_model=32, n_layers=2, rnn_hidden=RNN_HIDDEN["gru"], dropout=0.0, highway=True, lr=2e-3),
    "lstm": dict(d_model=32, n_layers=2, rnn_hidden=RNN_HIDDEN["lstm"], dropout=0.0, highway=True, lr=2e-3),
    # mambapy blocks in the minGRU block's place (d_state 16, expand 2, conv 4 over the patches), MLP x0.5: within
    # 10% of the minGRU forecaster (tests/test_mamba.py)
    "mamba": dict(d_model=32, n_layers=2, expansion=2.0, mlp_ratio=MAMBA_MLP["cpu"], conv_kernel=4, d_state=16,
                  dropout=0.0, highway=True, lr=2e-3),
    "dlinear": dict(lr=1e-4, weight_decay=0.0),
    "itransformer": dict(d_model=128, n_layers=2, n_heads=8, d_ff=128, dropout=0.1, lr=5e-4),
    "repeat": dict(),
}
# paper preset: TSLib's training (batch 32, 10 epochs, early stopping after 3 epochs without a better
# validation loss) at the published model sizes, for a GPU
_PAPER = {
    "mingru": dict(d_model=128, n_layers=3, expansion=2.0, mlp_ratio=2.0, conv_kernel=0, dropout=0.1, highway=True,
                   lr=1e-3),
    "minlstm": dict(d_model=128, n_layers=3, expansion=2.0, mlp_ratio=2.0, conv_kernel=0, dropout=0.1, highway=True,
                    lr=1e-3),
    "gru": dict(d_model=128, n_layers=2, rnn_hidden=192, dropout=0.1, highway=True, lr=1e-3),
    "lstm": dict(d_model=128, n_layers=2, rnn_hidden=168, dropout=0.1, highway=True, lr=1e-3),
    "mamba": dict(d_model=128, n_layers=3, expansion=2.0, mlp_ratio=MAMBA_MLP["paper"], conv_kernel=4, d_state=16,
                  dropout=0.1, highway=True, lr=1e-3),
    "dlinear": dict(lr=1e-4, weight_decay=0.0),
    "itransformer": dict(d_model=256, n_layers=2, n_heads=8, d_ff=256, dropout=0.1, lr=1e-4),
    "repeat": dict(),
}


def _train_windows(given: dict) -> int:
    """Train windows of the series `given` names, from its row count (a line count, not a parse)."""
    cfg = ForecastConfig(**{k: v for k, v in given.items() if k in ForecastConfig.__dataclass_fields__})
    name, path = D.resolve_csv(cfg.dataset, cfg.csv, cfg.data_dir)
    with open(path, "rb") as f:
        rows = sum(1 for line in f if line.strip()) - 1
    try:
        b = D.borders(name, rows, cfg.L)
    except ValueError:
        return 1  # the task's own check reports it, with the file's name
    return max(1, D.n_windows(b["train"], cfg.L, cfg.horizon))


def build_forecaster(cfg: ForecastConfig, n_channels: int):
    """The forecaster `cfg.model` for `n_channels` channels (all that a trained run's weights need)."""
    if cfg.model in RNN_MODELS:
        return RNNForecaster(cfg.model, n_channels, cfg.L, cfg.horizon, patch_len=cfg.patch_len,
                             patch_stride=cfg.patch_stride, revin=cfg.revin,
                             channel_independent=cfg.channel_independent, decoder=cfg.decoder, highway=cfg.highway,
                             **model_kwargs(cfg))
    if cfg.model == "dlinear":
        return DLinear(cfg.L, cfg.horizon, cfg.moving_avg)
    if cfg.model == "itransformer":
        return ITransformer(cfg.L, cfg.horizon, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, cfg.dropout,
                            cfg.revin)
    return Repeat(cfg.horizon)


class ForecastTask(Task):
    name = "forecast"
    Config = ForecastConfig
    eval_metric, eval_mode, eval_split = "mse", "min", "val"

    @classmethod
    def preset(cls, preset: str, model: str) -> dict:
        return cls.preset_for(preset, model, {"model": model})

    @classmethod
    def preset_for(cls, preset: str, model: str, given: dict) -> dict:
        super().preset(preset, model)
        sizes = dict((_CPU if preset == "cpu" else _PAPER)[model])
        bs = 32
        epoch = math.ceil(_train_windows({**given, "model": model}) / bs)  # steps per pass over the windows
        if model == "repeat":
            return {"model": model, "steps": 1, "eval_every": 1, "warmup_steps": 0}
        common = {"model": model, "batch_size": bs, "min_lr": sizes["lr"] / 20, "beta2": 0.999,
                  "weight_decay": sizes.pop("weight_decay", 1e-4), "grad_clip": 1.0}
        if model == "dlinear":  # TSLib's recipe, which reproduces the published figure (docs/forecasting.md)
            if given.get("dataset") == "national_illness" and not given.get("csv"):
                # 20 steps a pass: at lr 1e-4 ten passes leave it far from converged; 1e-2 had the lowest
                # validation MSE of 1e-4, 1e-3, 1e-2 (docs/forecasting.md)
                sizes["lr"], common["min_lr"] = 1e-2, 1e-2 / 20
            return {**common, **sizes, "steps": 10 * epoch, "warmup_steps": 0, "eval_every": epoch, "patience": 3,
                    "eval_windows": 0, **({"time_budget": 120.0, "threads": 1} if preset == "cpu" else {})}
        if preset == "cpu":
            # 6 passes (at least 600 steps, at most 4000), evaluated 4 times a pass (every 25..250 steps) on
            # 1000 validation windows, stopped after 8 evaluations without a better one or after 75 s of
            # training on one core, whichever comes first
            steps = min(max(6 * epoch, 600), 4000)
            return {**common, **sizes, "steps": steps, "warmup_steps": min(100, steps // 10),
                    "eval_every": max(25, min(epoch // 4, 250)), "patience": 8, "eval_windows": 1000,
                    "time_budget": 75.0, "threads": 1}
        return {**common, **sizes, "steps": 10 * epoch, "warmup_steps": min(500, epoch), "eval_every": epoch,
                "patience": 3, "eval_windows": 0}

    def __init__(self, cfg: ForecastConfig):
        super().__init__(cfg)
        L, H = cfg.L, cfg.horizon
        name, path = D.resolve_csv(cfg.dataset, cfg.csv, cfg.data_dir)
        s = D.read_csv(path, min_rows=L + H)
        self.series, self.split_rule = s, name
        if cfg.features == "S":
            if cfg.target not in s.columns:
                raise ValueError(f"target: expected a column of {path} ({s.columns}), got {cfg.target!r}")
            cols = [s.columns.index(cfg.target)]
        else:
            cols = list(range(len(s.columns)))
        self.columns = [s.columns[j] for j in cols]
        values = s.values[:, cols]
        self.borders = D.borders(name, len(values), L)
        for split, rows in self.borders.items():
            if D.n_windows(rows, L, H) < 1:
                raise ValueError(f"{path}: the {split} split (rows {rows[0]}..{rows[1] - 1}) has no window of "
                                 f"seq_len + horizon = {L + H} rows; expected a longer series or a shorter "
                                 f"seq_len/horizon ({len(values)} rows in all)")
        a, b = self.borders["train"]
        self.scaler = D.Scaler.fit(values[a:b])  # train rows only
        self.data = torch.from_numpy(self.scaler.transform(values).astype(np.float32))  # (N, C)

    def data_fingerprint(self) -> dict:
        return {"path": str(self.series.path), "sha256": self.series.sha256, "columns": self.columns,
                "split_rule": self.split_rule, "borders": self.borders,
                "scaler_mean": self.scaler.mean.tolist(), "scaler_std": self.scaler.std.tolist()}

    def build_model(self):
        return build_forecaster(self.cfg, len(self.columns))

    def n_windows(self, split: str) -> int:
        if split not in self.borders:
            raise ValueError(f"split: expected one of {tuple(self.borders)}, got {split!r}")
        return D.n_windows(self.borders[split], self.cfg.L, self.cfg.horizon)

    def windows(self, split: str, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows of `split` with the given window indices -> (x (n, L, C), y (n, H, C))."""
        L, H = self.cfg.L, self.cfg.horizon
        idx = self.borders[split][0] + starts[:, None] + torch.arange(L + H)
        w = self.data[idx]
        return w[:, :L], w[:, L:]

    def train_batch(self, step: int, seed: int, lo: int, hi: int):
        return self.windows("train", example_ints(seed, step, lo, hi, self.n_windows("train")))

    def loss(self, model, batch):
        x, y = batch
        pred = model(x, y) if getattr(model, "decoder", "direct") == "autoregressive" else model(x)
        return torch.nn.functional.mse_loss(pred.float(), y), {}

    @torch.no_grad()
    def predict(self, model, x: torch.Tensor) -> torch.Tensor:
        """Forecasts (n, H, C) of windows x (n, L, C), in batches of eval_batch_size."""
        dev = next(iter(model.parameters()), torch.empty(0)).device
        return torch.cat([model(x[i:i + self.cfg.eval_batch_size].to(dev)).float().cpu()
                          for i in range(0, len(x), self.cfg.eval_batch_size)]) if len(x) else x[:, :0]

    @torch.no_grad()
    def evaluate(self, model, split: str) -> dict:
        n = self.n_windows(split)
        starts = torch.arange(n)
        if split == "val" and self.cfg.eval_windows and self.cfg.eval_windows < n:  # never the test split
            starts = torch.linspace(0, n - 1, self.cfg.eval_windows).round().long()
        se = ae = 0.0
        for i in range(0, len(starts), 4096):
            x, y = self.windows(split, starts[i:i + 4096])
            err = (self.predict(model, x) - y).double()
            se += float((err ** 2).sum())
            ae += float(err.abs().sum())
        count = len(starts) * self.cfg.horizon * len(self.columns)
        return {"mse": se / count, "mae": ae / count, "windows": float(len(starts))}


TASK = ForecastTask
