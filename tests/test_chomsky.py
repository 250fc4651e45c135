"""The seven Chomsky-hierarchy problems: answers against plain-Python rules, pinned examples, purity and
slice-invariance, the length protocol (train 1-40, test 40-256), evaluation through oracle and constant
models, the positive-state property of minGRU that makes parity unsolvable, and config errors."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn as nn

from minrnn.layers import MinGRU
from minrnn.tasks.answers import IGNORE, example_generator
from minrnn.tasks.chomsky import (PROBLEMS, Chomsky, ChomskyConfig, make_example, make_examples, n_classes,
                                  split_lengths, train_length)


def rule(problem, w, m=None):
    """The answers of a string w (a list), written out plainly."""
    if problem == "parity":
        return [sum(w) % 2]
    if problem == "even_pairs":
        return [sum(1 for a, b in zip(w, w[1:]) if a != b) % 2]
    if problem == "cycle_nav":
        pos = 0
        for a in w:
            pos = (pos + {0: 0, 1: 1, 2: -1}[a]) % 5
        return [pos]
    if problem == "bucket_sort":
        return sorted(w)
    c = Counter(w)
    top = max(c.values())
    if problem == "majority":
        return [min(s for s in c if c[s] == top)]
    if problem == "majority_count":
        return [top]
    return [w[m]]  # missing_duplicate


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_answers_follow_the_rule(problem):
    S = PROBLEMS[problem][1]
    query, pad = S, S + 1
    for L in (1, 2, 3, 17, 40, 97):
        for i in range(12):
            x, y = make_example(problem, L, example_generator(5, "t", L, i))
            x, y = x.tolist(), y.tolist()
            w = x[:L]
            assert all(0 <= s < S for s in w)
            if problem == "missing_duplicate":
                m = x.index(query) - L  # length of the repeated prefix
                assert len(x) == 2 * L + 1 and 0 <= m < L
                assert x[L:L + m] == w[:m] and x[L + m + 1:] == [pad] * (L - m)
                pos = [L + m]
            else:
                k = L if problem == "bucket_sort" else 1
                assert len(x) == L + k and x[L:] == [query] * k
                pos = list(range(L, L + k))
            assert [y[p] for p in pos] == rule(problem, w, x.index(query) - L)
            assert all(v == IGNORE for j, v in enumerate(y) if j not in pos)


def test_pinned_examples():
    got = {p: make_example(p, 6, example_generator(0, "t", 0, 0)) for p in PROBLEMS}
    assert got["parity"][0].tolist() == [1, 0, 0, 1, 0, 0, 2] and got["parity"][1][-1] == 0
    assert got["even_pairs"][1][-1] == 1
    assert got["cycle_nav"][0].tolist() == [1, 0, 1, 0, 1, 1, 3] and got["cycle_nav"][1][-1] == 4
    assert got["bucket_sort"][1][6:].tolist() == [0, 1, 2, 3, 8, 8]
    assert got["majority"][0].tolist() == [19, 45, 16, 36, 10, 19, 63] and got["majority"][1][-1] == 19
    assert got["majority_count"][1][-1] == 2
    assert got["missing_duplicate"][0].tolist() == [1, 0, 7, 0, 1, 1, 1, 0, 9, 10, 10, 10, 10]
    assert got["missing_duplicate"][1][8] == 7


def test_label_balance():
    """Binary/cyclic answers are balanced (a classifier cannot score by predicting one class)."""
    for problem, C in (("parity", 2), ("even_pairs", 2), ("cycle_nav", 5)):
        ys = [int(make_example(problem, 30, example_generator(0, "b", 0, i))[1][-1]) for i in range(2000)]
        freq = [ys.count(c) / len(ys) for c in range(C)]
        assert max(freq) < 1 / C + 0.05, (problem, freq)


def test_pure_slices_and_train_lengths():
    task = Chomsky(ChomskyConfig(problem="bucket_sort"))
    a = task.train_batch(11, 2, 0, 16)
    parts = [task.train_batch(11, 2, lo, hi) for lo, hi in ((0, 3), (3, 16))]
    for i in range(2):
        assert torch.equal(a[i], task.train_batch(11, 2, 0, 16)[i])
        assert torch.equal(a[i], torch.cat([p[i] for p in parts]))
    cfg = task.cfg
    lengths = [train_length(cfg, 0, s) for s in range(2000)]
    assert min(lengths) == 1 and max(lengths) == 40 and len(set(lengths)) == 40
    assert a[0].shape[1] == 2 * train_length(cfg, 2, 11)
    assert split_lengths(cfg, "val") == list(range(1, 41))
    test = split_lengths(cfg, "test")
    assert test[0] == 40 and test[-1] == 256 and len(test) == 28
    with pytest.raises(ValueError, match="split"):
        split_lengths(cfg, "train")


def test_classes_and_vocab():
    expect = {"parity": (2, 4), "even_pairs": (2, 4), "cycle_nav": (5, 5), "bucket_sort": (10, 12),
              "majority": (63, 65), "majority_count": (257, 257), "missing_duplicate": (9, 11)}
    for p, (C, V) in expect.items():
        t = Chomsky(ChomskyConfig(problem=p))
        assert (t.n_classes, t.vocab) == (C, V), p
    assert n_classes(ChomskyConfig(problem="majority_count", test_max_len=64)) == 65


class Lookup(nn.Module):
    """An oracle over a fixed set: puts the right answer's logit up wherever the set says, else class `c`."""

    def __init__(self, eval_set: dict, V: int, c: int | None = None):
        super().__init__()
        self.table = {tuple(x.tolist()): y for xs, ys in eval_set.values() for x, y in zip(xs, ys)}
        self.V, self.c = V, c
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(*x.shape, self.V) + self.w
        for b in range(x.shape[0]):
            y = self.table[tuple(x[b].tolist())]
            for t in (y != IGNORE).nonzero()[:, 0].tolist():
                out[b, t, int(y[t]) if self.c is None else self.c] = 10.0
        return out, None


@pytest.mark.parametrize("problem", ["parity", "bucket_sort", "missing_duplicate", "majority_count"])
def test_evaluate_oracle_and_constant(problem):
    cfg = ChomskyConfig(problem=problem, train_max_len=6, test_min_len=6, test_max_len=30, test_len_step=6,
                        n_val_per_len=5, n_test_per_len=4, eval_batch=3)
    task = Chomsky(cfg)
    test = task.eval_set("test")
    assert sorted(test) == [6, 12, 18, 24, 30] and all(x.shape[0] == 4 for x, _ in test.values())
    r = task.evaluate(Lookup(test, task.vocab).eval(), "test")
    assert r["acc"] == 1.0 and r["acc_len6"] == 1.0 and r["acc_len30"] == 1.0
    # a constant answer scores the frequency of that class, averaged over lengths
    c = 1
    per_len = {L: int((y[y != IGNORE] == c).sum()) / int((y != IGNORE).sum()) for L, (_, y) in test.items()}
    r = task.evaluate(Lookup(test, task.vocab, c=c).eval(), "test")
    assert r["acc"] == pytest.approx(sum(per_len.values()) / 5, abs=1e-12)
    assert r["acc_len30"] == pytest.approx(per_len[30], abs=1e-12)
    assert task.evaluate(Lookup(task.eval_set("val"), task.vocab).eval(), "val")["acc"] == 1.0


@pytest.mark.parametrize("model", ["mingru", "minlstm", "transformer", "gru", "lstm"])
def test_every_architecture_runs_on_train_and_test_lengths(model):
    cfg = ChomskyConfig(problem="missing_duplicate", model=model, d_model=16, n_layers=1, n_heads=2,
                        test_min_len=40, test_max_len=256, test_len_step=216, n_test_per_len=2, n_val_per_len=1)
    task = Chomsky(cfg)
    m = task.build_model()
    loss, logs = task.loss(m, task.train_batch(0, 0, 0, 4))
    loss.backward()
    assert torch.isfinite(loss) and logs["len"] == 2 * train_length(cfg, 0, 0) + 1
    m.eval()
    with torch.no_grad():
        r = task.evaluate(m, "test")
    assert set(r) == {"acc", "loss", "acc_len40", "acc_len256"} and 0.0 <= r["acc"] <= 1.0


def test_positive_mingru_states_never_change_sign():
    """Why parity is out of reach: with the positive candidate g and h0 >= 0, h_t = (1 - z) h_{t-1} + z g(.)
    is a convex combination of positives, so every state is > 0 whatever the input; and a_t = 1 - z_t lies in
    (0, 1), so no input can flip a state's sign, which a parity counter needs at every 1."""
    torch.manual_seed(0)
    layer = MinGRU(8, 16, candidate="g")
    x = torch.randn(4, 300, 8) * 5
    y, h = layer(x)
    assert (y > 0).all() and (h > 0).all()
    bits = torch.randint(0, 2, (4, 300, 1)).float().expand(4, 300, 8)
    y, _ = layer(bits)
    assert (y > 0).all()


@pytest.mark.parametrize("kw,msg", [(dict(problem="dyck"), "problem"), (dict(train_min_len=0), "train lengths"),
                                    (dict(test_min_len=300), "test lengths"), (dict(test_len_step=0), "test_len_step")])
def test_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ChomskyConfig(**kw)
    with pytest.raises(ValueError, match="length"):
        make_example("parity", 0, example_generator(0, "t", 0, 0))


def _cli(*args, cwd):
    import os
    import subprocess
    import sys
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    r = subprocess.run([sys.executable, "-m", "minrnn.cli", *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, f"minrnn {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.mark.slow
def test_cli_end_to_end_every_problem(tmp_path):
    """`minrnn train chomsky --problem P` for all seven problems (tiny), then `minrnn eval --split test`."""
    import json
    tiny = ["--steps", "2", "--eval-every", "2", "--d-model", "8", "--n-layers", "1", "--batch-size", "4",
            "--n-val-per-len", "1", "--n-test-per-len", "2", "--train-max-len", "6", "--test-min-len", "6",
            "--test-max-len", "30", "--test-len-step", "24", "--threads", "1", "--no-progress",
            "--out-dir", str(tmp_path)]
    for problem in sorted(PROBLEMS):
        _cli("train", "chomsky", "--preset", "cpu", "--problem", problem, "--run-name", problem, *tiny, cwd=tmp_path)
        cfg = json.loads((tmp_path / problem / "config.json").read_text())
        assert cfg["task_config"]["problem"] == problem and cfg["task_config"]["conv_kernel"] == 0
        summary = json.loads((tmp_path / problem / "summary.json").read_text())
        assert summary["steps"] == 2 and 0.0 <= summary["best_val_acc"] <= 1.0
    out = json.loads(_cli("eval", str(tmp_path / "bucket_sort"), "--split", "test", cwd=tmp_path).splitlines()[-1])
    assert out["split"] == "test" and set(out) >= {"acc", "loss", "acc_len6", "acc_len30"}
