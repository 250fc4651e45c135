"""Selective copying: the generator against an independent reading of each example, its purity and
slice-invariance, pinned example values, the answer loss/accuracy (class-axis trap with answers != classes),
evaluation through oracle and constant models, presets and config errors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minrnn.tasks.answers import IGNORE, answer_accuracy, answer_counts, answer_loss
from minrnn.tasks.selective_copy import SelectiveCopy, SelectiveCopyConfig, make_examples


def check_example(x, y, seq_len, n_tokens, V):
    """Read an example back independently: data tokens in order of position, markers, targets."""
    x, y = x.tolist(), y.tolist()
    assert len(x) == len(y) == seq_len + n_tokens
    region, markers = x[:seq_len], x[seq_len:]
    data = [t for t in region if t != 0]
    assert len(data) == n_tokens, "expected exactly n_tokens non-blank tokens in the data region"
    assert all(1 <= t <= V - 2 for t in data)
    assert markers == [V - 1] * n_tokens
    assert y[:seq_len] == [IGNORE] * seq_len
    assert y[seq_len:] == data


@pytest.mark.parametrize("seq_len,n_tokens,V", [(20, 4, 16), (64, 16, 16), (50, 10, 16), (7, 7, 5), (300, 1, 3)])
def test_examples_read_back(seq_len, n_tokens, V):
    cfg = SelectiveCopyConfig(seq_len=seq_len, n_tokens=n_tokens, vocab_size=V)
    x, y = make_examples(cfg, seed=3, split="train", step=5, lo=0, hi=40)
    assert x.dtype == y.dtype == torch.int64 and x.shape == (40, seq_len + n_tokens)
    for i in range(40):
        check_example(x[i], y[i], seq_len, n_tokens, V)
    # positions are spread over the region and every data value occurs
    pos = (x[:, :seq_len] != 0).nonzero()[:, 1]
    if seq_len > n_tokens:
        assert pos.min() < seq_len // 4 and pos.max() >= 3 * seq_len // 4
    assert set(x[:, :seq_len][x[:, :seq_len] != 0].tolist()) == set(range(1, V - 1))


def test_pinned_example():
    """The stream is part of the contract (a fixed test set per seed): pin the first example of seed 0."""
    x, y = make_examples(SelectiveCopyConfig(seq_len=20, n_tokens=4), 0, "train", 0, 0, 1)
    assert x[0].tolist() == [0, 0, 0, 0, 8, 8, 0, 9, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 15, 15, 15, 15]
    assert y[0, 20:].tolist() == [8, 8, 9, 4]


def test_pure_and_slice_invariant():
    cfg = SelectiveCopyConfig(seq_len=100, n_tokens=16)
    a = make_examples(cfg, 1, "train", 7, 0, 32)
    b = make_examples(cfg, 1, "train", 7, 0, 32)
    parts = [make_examples(cfg, 1, "train", 7, lo, hi) for lo, hi in ((0, 5), (5, 6), (6, 32))]
    for i in range(2):
        assert torch.equal(a[i], b[i])
        assert torch.equal(a[i], torch.cat([p[i] for p in parts]))
    for other in (make_examples(cfg, 2, "train", 7, 0, 32), make_examples(cfg, 1, "train", 8, 0, 32),
                  make_examples(cfg, 1, "val", 7, 0, 32)):
        assert (other[0] != a[0]).any(dim=1).all(), "expected different examples for another seed/step/split"


def test_eval_sets_fixed_per_seed():
    cfg = dict(seq_len=40, n_tokens=4, n_val=10, n_test=12)
    t1, t2 = SelectiveCopy(SelectiveCopyConfig(**cfg)), SelectiveCopy(SelectiveCopyConfig(**cfg))
    t3 = SelectiveCopy(SelectiveCopyConfig(eval_seed=1, **cfg))
    assert torch.equal(t1.eval_set("val")[0], t2.eval_set("val")[0])
    assert t1.eval_set("test")[0].shape == (12, 44)
    assert not torch.equal(t1.eval_set("val")[0], t3.eval_set("val")[0])
    assert not torch.equal(t1.eval_set("val")[0], t1.eval_set("test")[0][:10])
    with pytest.raises(ValueError, match="split"):
        t1.eval_set("train")


def manual_loss(logits, y, C):
    """-log softmax over the first C outputs at each answer, averaged, by explicit loops (the reference)."""
    total, n = 0.0, 0
    for b in range(y.shape[0]):
        for t in range(y.shape[1]):
            if y[b, t] != IGNORE:
                row = logits[b, t, :C].double()
                total += float(torch.logsumexp(row, 0) - row[y[b, t]])
                n += 1
    return total / n


def test_class_axis_trap_answers_differ_from_classes():
    """10 answers, 16 classes: the correct flattening matches the loop reference, and the swapped layout
    that hides when answers == classes is an error here, from F.cross_entropy and from answer_loss."""
    cfg = SelectiveCopyConfig(seq_len=30, n_tokens=10, vocab_size=16)
    x, y = make_examples(cfg, 0, "train", 0, 0, 4)
    logits = torch.randn(4, 40, 16, generator=torch.Generator().manual_seed(0))
    got = answer_loss(logits, y, 16)
    assert math.isclose(float(got), manual_loss(logits, y, 16), rel_tol=1e-6)
    ans_logits, ans_y = logits[:, 30:], y[:, 30:]  # (B, K=10, C=16), (B, 10)
    with pytest.raises((RuntimeError, ValueError)):
        F.cross_entropy(ans_logits, ans_y)  # class axis read as 10: shape error, caught
    with pytest.raises(ValueError, match="logits: expected shape"):
        answer_loss(ans_logits.transpose(1, 2), ans_y, 16)


def test_class_axis_trap_is_silent_when_answers_equal_classes():
    """Why the test above uses 10 answers: with 16 answers and 16 classes the swapped call runs and is wrong."""
    cfg = SelectiveCopyConfig(seq_len=30, n_tokens=16, vocab_size=16)
    _, y = make_examples(cfg, 0, "train", 0, 0, 4)
    logits = torch.randn(4, 46, 16, generator=torch.Generator().manual_seed(1))
    wrong = float(F.cross_entropy(logits[:, 30:], y[:, 30:]))  # no error raised
    right = float(answer_loss(logits, y, 16))
    assert math.isclose(right, manual_loss(logits, y, 16), rel_tol=1e-6)
    assert abs(wrong - right) > 1e-3


def test_accuracy_pinned():
    y = torch.full((2, 5), IGNORE)
    y[:, 3:] = torch.tensor([[1, 2], [3, 4]])
    logits = torch.zeros(2, 5, 6)
    for b, t, c in ((0, 3, 1), (0, 4, 5), (1, 3, 3), (1, 4, 4), (0, 0, 2)):
        logits[b, t, c] = 1.0  # right, wrong, right, right, and a non-answer position that must not count
    assert answer_counts(logits, y, 6) == (3, 4)
    assert answer_accuracy(logits, y, 6) == 0.75
    logits[0, 4, 5], logits[0, 4, 2] = 0.0, 1.0
    assert answer_accuracy(logits, y, 6) == 1.0
    with pytest.raises(ValueError, match="classes in"):
        answer_loss(logits, y, 3)  # target 4 is not a class of 3
    with pytest.raises(TypeError, match="int64"):
        answer_loss(logits, y.int(), 6)
    with pytest.raises(ValueError, match="no"):
        answer_accuracy(logits, torch.full((2, 5), IGNORE), 6)


class Oracle(nn.Module):
    """Reads the data tokens of each row and puts a large logit on them, in order, at the markers."""

    def __init__(self, seq_len, n_tokens, V, miss: int = 0):
        super().__init__()
        self.seq_len, self.n_tokens, self.V, self.miss = seq_len, n_tokens, V, miss
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(*x.shape, self.V) + self.w
        for b in range(x.shape[0]):
            data = x[b, :self.seq_len][x[b, :self.seq_len] != 0]
            for k, tok in enumerate(data.tolist()):
                c = tok if k >= self.miss else (tok % (self.V - 2)) + 1  # first `miss` answers wrong
                out[b, self.seq_len + k, c] = 20.0
        return out, None


def test_evaluate_oracle_and_constant_models():
    cfg = SelectiveCopyConfig(seq_len=24, n_tokens=8, n_val=10, n_test=20, eval_batch=7)
    task = SelectiveCopy(cfg)
    assert task.evaluate(Oracle(24, 8, 16).eval(), "test")["acc"] == 1.0
    assert task.evaluate(Oracle(24, 8, 16, miss=2).eval(), "val")["acc"] == 0.75
    const = Oracle(24, 8, 16, miss=0)
    const.forward = lambda x: (torch.zeros(*x.shape, 16).index_fill(-1, torch.tensor([5]), 1.0), None)
    _, y = task.eval_set("test")
    expect = int((y[:, 24:] == 5).sum()) / y[:, 24:].numel()
    r = task.evaluate(const, "test")
    assert r["acc"] == pytest.approx(expect, abs=1e-12)
    # loss of uniform-but-one logits: -log(e^0 / (e^1 + 15)) off class 5, -log(e / (e + 15)) on it
    off, on = math.log(math.e + 15), math.log(math.e + 15) - 1.0
    assert r["loss"] == pytest.approx(expect * on + (1 - expect) * off, rel=1e-6)


def test_task_loss_on_a_model_and_presets():
    over = SelectiveCopy.preset("paper", "mingru")
    assert {k: over[k] for k in ("d_model", "n_layers", "expansion", "conv_kernel", "mlp_ratio", "seq_len",
                                 "n_tokens", "vocab_size", "lr", "weight_decay", "grad_clip", "batch_size",
                                 "steps")} == dict(d_model=64, n_layers=3, expansion=6.0, conv_kernel=0,
                                                   mlp_ratio=0.0, seq_len=4096, n_tokens=16, vocab_size=16,
                                                   lr=3e-4, weight_decay=0.05, grad_clip=1.0, batch_size=64,
                                                   steps=400_000)
    cpu = SelectiveCopy.preset("cpu", "minlstm")
    # the cpu preset of docs/selective_copy.md: the same model and task, a data region of 32 (inputs 48)
    assert {k: cpu[k] for k in ("d_model", "n_layers", "expansion", "conv_kernel", "mlp_ratio", "seq_len",
                                "n_tokens", "vocab_size", "lr", "batch_size", "steps", "time_budget")} == \
        dict(d_model=64, n_layers=3, expansion=6.0, conv_kernel=0, mlp_ratio=0.0, seq_len=32, n_tokens=16,
             vocab_size=16, lr=5e-3, batch_size=32, steps=4000, time_budget=1800.0)
    assert SelectiveCopy.preset("cpu", "gru")["d_model"] == 64 and "expansion" not in SelectiveCopy.preset("cpu", "gru")
    fields = {k: v for k, v in cpu.items() if k in SelectiveCopyConfig.__dataclass_fields__}
    task = SelectiveCopy(SelectiveCopyConfig(model="minlstm", **dict(fields, seq_len=32)))
    model = task.build_model()
    # the authors' block: no conv, no MLP; minLSTM at d 64, expansion 6 -> hidden 384, 3 gates
    assert all(b.conv is None and b.mlp is None for b in model.blocks)
    d, h, V = 64, 384, 16
    per_layer = d + (d * 3 * h + 3 * h) + (h * d + d)  # norm, gate matmul, projection back
    assert sum(p.numel() for p in model.parameters()) == V * d + 3 * per_layer + d + (d * V + V)
    loss, logs = task.loss(model, task.train_batch(0, 0, 0, 3))
    assert loss.dim() == 0 and 0.0 <= logs["acc"] <= 1.0
    # an untrained model's loss is near log(16) (its outputs are small)
    assert abs(float(loss.detach()) - math.log(16)) < 1.0
    with pytest.raises(ValueError, match="preset"):
        SelectiveCopy.preset("huge", "mingru")


@pytest.mark.parametrize("kw,msg", [(dict(n_tokens=20, seq_len=10), "n_tokens"), (dict(vocab_size=2), "vocab_size"),
                                    (dict(n_val=0), "n_val"), (dict(model="rwkv"), "model")])
def test_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SelectiveCopyConfig(**kw)


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    """`minrnn train selective-copy --preset cpu` (tiny) then `minrnn eval RUN_DIR --split test`, as a user would."""
    import json
    import os
    import subprocess
    import sys
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    cmd = [sys.executable, "-m", "minrnn.cli"]
    r = subprocess.run(cmd + ["train", "selective-copy", "--preset", "cpu", "--model", "minlstm", "--n-layers", "2",
                              "--steps", "3", "--eval-every", "3", "--seq-len", "24", "--n-tokens", "5",
                              "--batch-size", "4", "--n-val", "6", "--n-test", "10", "--threads", "1",
                              "--no-progress", "--out-dir", str(tmp_path), "--run-name", "sc"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = json.loads((tmp_path / "sc" / "config.json").read_text())["task_config"]
    assert (cfg["model"], cfg["n_layers"], cfg["expansion"], cfg["conv_kernel"], cfg["mlp_ratio"]) == \
        ("minlstm", 2, 6.0, 0, 0.0)
    r = subprocess.run(cmd + ["eval", str(tmp_path / "sc"), "--split", "test", "--threads", "1"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["split"] == "test" and out["step"] == 3 and 0.0 <= out["acc"] <= 1.0 and out["loss"] > 0
