"""The harness check that needs no training: the `repeat` forecast (last value) on every benchmark cell, on
every test window (our protocol) and with the last partial batch of 32 windows dropped (the test loader of the
DLinear paper's code, drop_last=True), beside that paper's published Repeat row (Table 2).

    python scripts/experiments/forecast_repeat_check.py [--json docs/data/forecast_repeat_check.json]

Computed with numpy from the raw CSVs (independently of minrnn's task code but for the CSV reader and the
split borders), so it checks the data, the splits, the train-only scaler and the metrics at once.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forecast_table import DATASETS, REPEAT, horizons  # noqa: E402

from minrnn.paths import find_data  # noqa: E402
from minrnn.tasks.forecast import data as D  # noqa: E402


def errors(z: np.ndarray, starts: np.ndarray, L: int, H: int) -> tuple[float, float]:
    last = z[starts + L - 1][:, None, :]  # (n, 1, C)
    fut = np.stack([z[k + L:k + L + H] for k in starts])  # (n, H, C)
    return float(((fut - last) ** 2).mean()), float(np.abs(fut - last).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args(argv)
    out = {}
    print(f"{'cell':22s} {'windows':>7s}  {'all windows':>13s}  {'drop_last(32)':>13s}  {'published':>13s}")
    for ds in DATASETS:
        raw = D.read_csv(find_data(f"forecasting/{ds}.csv")).values
        L = D.default_seq_len(ds)
        b = D.borders(ds, len(raw), L)
        tr = raw[b["train"][0]:b["train"][1]]
        z = (raw - tr.mean(0)) / tr.std(0)
        for i, H in enumerate(horizons(ds)):
            st = np.arange(b["test"][0], b["test"][1] - L - H + 1)
            full, dropped = errors(z, st, L, H), errors(z, st[:len(st) // 32 * 32], L, H)
            pub = REPEAT[ds][i]
            out[f"{ds}-{H}"] = {"windows": len(st), "all": full, "drop_last_32": dropped, "published": pub}
            print(f"{ds + '-' + str(H):22s} {len(st):7d}  {full[0]:.3f}/{full[1]:.3f}  {dropped[0]:.3f}/{dropped[1]:.3f}"
                  f"  {pub[0]:.3f}/{pub[1]:.3f}")
    same = sum(round(v["drop_last_32"][0], 3) == v["published"][0] and round(v["drop_last_32"][1], 3) == v["published"][1]
               for v in out.values())
    print(f"drop_last(32) equals the published Repeat MSE and MAE (3 decimals) in {same} of {len(out)} cells")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
