"""Training engine: schedule, weight-decay groups, accumulation, exact resume, checkpoint errors, early
stopping, config/CLI derivation. Uses the Shakespeare task at toy sizes and a toy task for early stopping."""
import json
import math
import os
from pathlib import Path

import pytest
import torch

from minrnn import checkpoint as ck
from minrnn import train as tr
from minrnn import train_config
from minrnn.tasks.base import Task, TaskConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"
needs_data = pytest.mark.skipif(not DATA.is_file(), reason=f"tiny-shakespeare not at {DATA}")
TINY = dict(model="mingru", d_model=16, n_layers=2, expansion=2.0, mlp_ratio=1.0, seq_len=16, eval_windows=8,
            eval_batch_size=8, batch_size=4, steps=12, eval_every=4, warmup_steps=3, lr=3e-3, min_lr=3e-4,
            threads=1, progress=False, data=str(DATA))


def _state(run_dir, name="ckpt_last.pt"):
    return ck.load_checkpoint(Path(run_dir) / name)["model"]


def _records(run_dir, kind):
    return [r for r in ck.read_metrics(run_dir) if r["kind"] == kind]


def test_lr_schedule_pinned():
    cfg = tr.TrainConfig(steps=10, warmup_steps=2, lr=1.0, min_lr=0.1)
    got = [tr.lr_factor(s, cfg) for s in range(11)]
    want = [0.5, 1.0] + [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 8)) for s in range(2, 11)]
    assert got == pytest.approx(want, abs=1e-12)
    assert got[2] == 1.0 and got[10] == pytest.approx(0.1)
    # with a time budget the decay follows the seconds when they run out first
    tb = tr.TrainConfig(steps=1000, warmup_steps=2, lr=1.0, min_lr=0.1, time_budget=100.0)
    assert tr.lr_factor(10, tb, 50.0) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert tr.lr_factor(10, tb, 150.0) == pytest.approx(0.1)
    assert tr.lr_factor(1, tb, 150.0) == 1.0  # warm-up counts steps


def test_weight_decay_groups():
    from minrnn.models.baselines import make_model
    m = make_model("transformer", vocab_size=11, d_model=16, n_layers=1, n_heads=2, block_size=8)
    opt = tr.make_optimizer(m, tr.TrainConfig(weight_decay=0.3), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.3 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n_unique = len({id(p) for p in m.parameters()})  # the tied embedding/head weight counted once
    assert len(decay["params"]) + len(no_decay["params"]) == n_unique


def test_config_errors_and_presets():
    with pytest.raises(ValueError, match="unknown config fields"):
        tr.resolve_config("shakespeare", None, {"nope": 1})
    with pytest.raises(ValueError, match="task: expected one of"):
        tr.resolve_config("nope")
    with pytest.raises(ValueError, match="amp"):
        tr.TrainConfig(amp="fp8")
    _, kc, tc = tr.resolve_config("shakespeare", "cpu", {"model": "gru", "lr": 5e-4})
    assert (kc.model, kc.rnn_hidden, tc.lr, tc.time_budget) == ("gru", 200, 5e-4, 900.0)


@needs_data
def test_resume_equals_uninterrupted(tmp_path):
    cfg = dict(TINY, dropout=0.1, grad_accum=2, out_dir=str(tmp_path))  # dropout: the RNG must resume too
    full = tr.train("shakespeare", None, dict(cfg, run_name="full"))
    part = tr.train("shakespeare", None, dict(cfg, run_name="part", ckpt_every=5), stop_at=5)
    assert part["stopped_at"] == 5
    with open(tmp_path / "part" / "metrics.jsonl", "a") as f:  # lines a killed run wrote after its checkpoint
        f.write(json.dumps({"kind": "train", "step": 6, "loss": 123.0}) + "\n")
    resumed = tr.train(resume=tmp_path / "part")
    assert resumed["steps"] == full["steps"] == 12
    a, b = _state(tmp_path / "full"), _state(tmp_path / "part")
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [(r["step"], r["loss"]) for r in _records(tmp_path / "full", "train")]
    lb = [(r["step"], r["loss"]) for r in _records(tmp_path / "part", "train")]
    assert la == lb
    assert [r["val_loss"] for r in _records(tmp_path / "full", "eval")] == \
        [r["val_loss"] for r in _records(tmp_path / "part", "eval")]
    assert full["best_val_loss"] == resumed["best_val_loss"] < math.log(65)


@needs_data
def test_grad_accumulation_matches_one_big_batch(tmp_path):
    one = tr.train("shakespeare", None, dict(TINY, steps=3, out_dir=str(tmp_path), run_name="a1"))
    acc = tr.train("shakespeare", None, dict(TINY, steps=3, grad_accum=4, out_dir=str(tmp_path), run_name="a4"))
    la = [r["loss"] for r in _records(tmp_path / "a1", "train")]
    lb = [r["loss"] for r in _records(tmp_path / "a4", "train")]
    assert la == pytest.approx(lb, rel=1e-5)
    assert one["best_val_loss"] == pytest.approx(acc["best_val_loss"], rel=1e-5)


@needs_data
def test_corrupted_and_mismatched_checkpoints(tmp_path):
    tr.train("shakespeare", None, dict(TINY, steps=4, out_dir=str(tmp_path), run_name="r"))
    run = tmp_path / "r"
    good = (run / "ckpt_last.pt").read_bytes()
    (run / "ckpt_last.pt").write_bytes(good[: len(good) // 2])  # truncated, as by a crash without atomicity
    with pytest.raises(RuntimeError, match="corrupted or not a minrnn checkpoint"):
        tr.train(resume=run)
    torch.save({"model": {}}, run / "ckpt_last.pt")
    with pytest.raises(RuntimeError, match="expected format"):
        tr.train(resume=run)
    (run / "ckpt_last.pt").write_bytes(good)
    c = json.loads((run / "config.json").read_text())
    c["task_config"]["d_model"] = 24
    (run / "config.json").write_text(json.dumps(c))
    with pytest.raises(ValueError, match="does not match the model"):
        tr.train(resume=run)
    with pytest.raises(ValueError, match="cannot change in a resumed run"):
        tr.train(resume=run, overrides={"lr": 1.0})


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "x.json"
    ck.atomic_write_json(p, {"a": 1})

    def boom(*a):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        ck.atomic_write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


class _ToyTask(Task):
    """Regression y = 2x; evaluate() replays a scripted metric sequence, to test early stopping."""
    name = "toy"
    Config = TaskConfig
    script = [3.0, 2.0, 2.5, 2.4, 2.6, 1.0]

    def build_model(self):
        self.calls = 0
        return torch.nn.Linear(1, 1)

    def train_batch(self, step, seed, lo, hi):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(64, 1, generator=g)[lo:hi]
        return x, 2 * x

    def loss(self, model, batch):
        x, y = batch
        return ((model(x) - y) ** 2).mean(), {"mse": 0.0}

    def evaluate(self, model, split):
        v = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return {"loss": v}


def test_early_stopping_and_best(tmp_path, monkeypatch):
    monkeypatch.setattr(train_config, "get_task", lambda name: _ToyTask)
    s = tr.train("toy", None, dict(steps=100, eval_every=2, patience=3, batch_size=8, out_dir=str(tmp_path),
                                   run_name="t", progress=False, warmup_steps=0))
    # evaluations at steps 2, 4, 6, 8: 3.0, 2.0 (best), 2.5, 2.4, then 2.6 at step 10 -> 3 without improvement
    assert (s["steps"], s["best_val_loss"], s["best_step"]) == (10, 2.0, 4)
    assert ck.load_checkpoint(tmp_path / "t" / "ckpt_best.pt")["state"]["step"] == 4
    assert [r["val_loss"] for r in _records(tmp_path / "t", "eval")] == [3.0, 2.0, 2.5, 2.4, 2.6]
