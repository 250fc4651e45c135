"""Long-horizon forecasting data: CSV reading with clear errors, the benchmark's splits, scaler and windows.

The protocol is the Time-Series-Library one (`../shared/data/forecasting/README.md` states it exactly):
- ETTh1/ETTh2: fixed borders of 12/4/4 months of 30 days: train rows [0, 8640), val [8640 - L, 11520),
  test [11520 - L, 14400); ETTm1/ETTm2 the same times 4 (15-minute rows). Rows after the test border are unused.
- any other series: n_train = int(0.7 N), n_test = int(0.2 N), n_val = N - n_train - n_test; val starts at
  n_train - L and test at N - n_test - L, so each split's first window reads L rows of the split before.
- a per-column standard scaler fitted on the train rows only (population std, as scikit-learn's), applied to
  every split; metrics are computed on the scaled values.
- stride-1 windows: a split of n rows has n - L - H + 1 windows (input L rows, target the next H rows).
"""
from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather", "exchange_rate", "national_illness")
_ETT_HOUR = (12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24)  # rows of train, val, test at one row per hour

# the dates of the benchmark files and of most user CSVs; ISO 8601 is tried first (datetime.fromisoformat)
_DATE_FORMATS = ("%Y/%m/%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d", "%m/%d/%Y %H:%M", "%m/%d/%Y",
                 "%d.%m.%Y %H:%M:%S", "%d.%m.%Y")


def parse_date(s: str) -> datetime | None:
    s = s.strip()
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(s, fmt)
        except ValueError:
            continue
    return None


@dataclass
class Series:
    """A multivariate series read from a CSV: dates (N,), values (N, C) float64, the column names, the file."""
    path: Path
    dates: list
    values: np.ndarray
    columns: list
    sha256: str


def read_csv(path: str | Path, min_rows: int = 1) -> Series:
    """Read a CSV whose first column is `date` (or named like a date/time) and the rest numbers. Errors name
    the file and the row (1-based line number) or column: a missing or unparsable date, a value that is not a
    finite number, a missing value, a ragged row, fewer than `min_rows` rows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"csv: expected an existing file, got {path} (missing)")
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")  # weather.csv has a few U+FFFD in its header already
    rows = csv.reader(text.splitlines())
    try:
        header = next(rows)
    except StopIteration:
        raise ValueError(f"{path}: expected a header line 'date,<columns...>', got an empty file") from None
    header = [h.strip() for h in header]
    if not header or header[0].lower() not in ("date", "datetime", "time", "timestamp", "ds"):
        raise ValueError(f"{path}: expected the first column to be the date column ('date'), got {header[0]!r}")
    if len(header) < 2:
        raise ValueError(f"{path}: expected at least one numeric column after {header[0]!r}, got none")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ValueError(f"{path}: expected distinct column names, got {dup} more than once")
    dates, values, lines = [], [], []
    for line, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue  # a blank line (e.g. at the end)
        if len(row) != len(header):
            raise ValueError(f"{path}, line {line}: expected {len(header)} fields (as the header), got {len(row)}")
        d = parse_date(row[0])
        if d is None:
            raise ValueError(f"{path}, line {line}: expected a date in column {header[0]!r}, got {row[0]!r}")
        try:
            v = [float(c) for c in row[1:]]
        except ValueError:
            j = next(j for j, c in enumerate(row[1:]) if not _is_float(c))
            what = "a missing value" if not row[1 + j].strip() else repr(row[1 + j])
            raise ValueError(f"{path}, line {line}, column {header[1 + j]!r}: expected a number, got {what}") from None
        bad = [j for j, x in enumerate(v) if not math.isfinite(x)]
        if bad:
            raise ValueError(f"{path}, line {line}, column {header[1 + bad[0]]!r}: expected a finite number, "
                             f"got {row[1 + bad[0]]!r} (missing values must be filled before forecasting)")
        dates.append(d)
        values.append(v)
        lines.append(line)
    if len(values) < min_rows:
        raise ValueError(f"{path}: expected at least {min_rows} data rows, got {len(values)}")
    for i in range(1, len(dates)):  # repeated dates are kept (weather.csv has some), going back is an error
        if dates[i] < dates[i - 1]:
            raise ValueError(f"{path}, line {lines[i]}: expected dates in increasing order, got {dates[i]} after "
                             f"{dates[i - 1]}")
    return Series(path, dates, np.asarray(values, dtype=np.float64).reshape(len(values), len(header) - 1),
                  header[1:], hashlib.sha256(raw).hexdigest())


def _is_float(c: str) -> bool:
    try:
        float(c)
        return True
    except ValueError:
        return False


def borders(name: str, n_rows: int, seq_len: int) -> dict[str, tuple[int, int]]:
    """Row ranges [start, end) of train/val/test for a series of `n_rows` rows (the input window L reaches
    back into the previous split): the ETT sets' fixed borders by name, 70/10/20 otherwise."""
    if name in ("ETTh1", "ETTh2", "ETTm1", "ETTm2"):
        k = 4 if name.startswith("ETTm") else 1
        a, b, c = (x * k for x in _ETT_HOUR)
        if n_rows < a + b + c:
            raise ValueError(f"{name}: expected at least {a + b + c} rows (the fixed ETT borders), got {n_rows}")
        ends = (a, a + b, a + b + c)
    else:
        n_train, n_test = int(0.7 * n_rows), int(0.2 * n_rows)
        ends = (n_train, n_rows - n_test, n_rows)
    return {"train": (0, ends[0]), "val": (ends[0] - seq_len, ends[1]), "test": (ends[1] - seq_len, ends[2])}


def n_windows(rows: tuple[int, int], seq_len: int, horizon: int) -> int:
    return max(0, rows[1] - rows[0] - seq_len - horizon + 1)


class Scaler:
    """Per-column standard scaler: mean and population std of the rows it is fitted on (std 0 -> 1)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean, self.std = np.asarray(mean, np.float64), np.asarray(std, np.float64)

    @classmethod
    def fit(cls, x: np.ndarray) -> "Scaler":
        std = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return x * self.std + self.mean


def resolve_csv(dataset: str, csv_path: str, data_dir: str) -> tuple[str, Path]:
    """(dataset name used for the split rule, CSV path): `csv_path` if given (70/10/20 unless its file name
    is a benchmark name), else `data_dir`/DATASET.csv, else $MINRNN_DATA/forecasting or ../shared/data."""
    from ...paths import find_data
    if csv_path:
        p = find_data("", csv_path)
        return (p.stem if p.stem in DATASETS else "custom"), p
    if dataset not in DATASETS:
        raise ValueError(f"dataset: expected one of {DATASETS} (or --csv PATH for your own series), got {dataset!r}")
    if data_dir:
        d = Path(data_dir)
        if not d.is_dir():
            raise FileNotFoundError(f"data_dir: expected a folder, got {d} (missing or not a folder)")
        p = d / f"{dataset}.csv"
        if not p.is_file():
            raise FileNotFoundError(f"{dataset}: expected {p} to exist (the benchmark CSV, unmodified)")
        return dataset, p
    return dataset, find_data(f"forecasting/{dataset}.csv")


def default_seq_len(dataset: str) -> int:
    """The benchmark's input length: 36 weeks for national_illness, 96 rows elsewhere."""
    return 36 if dataset == "national_illness" else 96


def future_dates(dates: list, horizon: int) -> list:
    """The next `horizon` dates after `dates`, spaced by the series' most common step."""
    if len(dates) < 2:
        raise ValueError("csv: expected at least 2 rows to infer the sampling step of the dates")
    tail = dates[-200:]
    steps = [b - a for a, b in zip(tail[:-1], tail[1:]) if b > a]  # repeated dates are no step
    if not steps:
        raise ValueError("csv: expected increasing dates to infer the sampling step, got one date repeated")
    step = max(set(steps), key=steps.count)
    return [dates[-1] + step * (i + 1) for i in range(horizon)]
