"""`minrnn plot`: axis labels follow the metric (a loss or not), and the train loss is kept on its own axis."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("matplotlib")
import matplotlib.pyplot as plt  # noqa: E402

from minrnn.commands.plot import plot_runs  # noqa: E402


def _run(tmp_path, name, acc):
    rd = tmp_path / name
    rd.mkdir()
    recs = [{"kind": "train", "step": s, "time": 2.0 * s, "loss": 3.0 / s} for s in (1, 2, 3, 4)]
    recs += [{"kind": "eval", "step": s, "time": 2.0 * s, "val_loss": 2.5 / s, "val_acc": a}
             for s, a in zip((2, 4), acc)]
    (rd / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return str(rd)


def _figure(monkeypatch, *args, **kw):
    figs = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figs.append(fig), real_close(fig)))
    out = plot_runs(*args, **kw)
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return figs[0]


def test_accuracy_metric_gets_its_own_axis(tmp_path, monkeypatch):
    runs = [_run(tmp_path, "a", (0.25, 0.5)), _run(tmp_path, "b", (0.3, 0.9))]
    fig = _figure(monkeypatch, runs, str(tmp_path / "acc.png"), metric="val_acc")
    main, twins = fig.axes[:2], fig.axes[2:]
    assert [ax.get_ylabel() for ax in main] == ["val_acc", "val_acc"]
    assert [ax.get_ylabel() for ax in twins] == ["train loss (nats, faint)"] * 2
    ys = sorted(tuple(line.get_ydata()) for line in main[0].get_lines())
    assert ys == [(0.25, 0.5), (0.3, 0.9)]  # the accuracy points, not the loss, on the main axis


def test_default_metric_is_the_eval_loss(tmp_path, monkeypatch):
    fig = _figure(monkeypatch, [_run(tmp_path, "a", (0.1, 0.2))], str(tmp_path / "loss.png"))
    assert len(fig.axes) == 2 and fig.axes[0].get_ylabel() == "loss (nats)"
    ys = [tuple(line.get_ydata()) for line in fig.axes[0].get_lines()]
    assert (1.25, 0.625) in ys and (3.0, 1.5, 1.0, 0.75) in ys
