"""Shakespeare task: data/split/vocabulary, pure batches, presets at equal parameters, a tiny run of every
model, generation with the carried state == argmax of the full forward, and the CLI (train/sample/eval/plot)."""
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minrnn.models.baselines import count_params, make_model
from minrnn.models.generate import generate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"
needs_data = pytest.mark.skipif(not DATA.is_file(), reason=f"tiny-shakespeare not at {DATA}")
ARCHS = ("mingru", "minlstm", "transformer", "gru", "lstm")


@pytest.fixture(scope="module")
def task():
    from minrnn.tasks.shakespeare import ShakespeareConfig, ShakespeareTask
    return ShakespeareTask(ShakespeareConfig(data=str(DATA), seq_len=16, eval_windows=4, eval_batch_size=4,
                                             d_model=16, n_layers=2, mlp_ratio=1.0))


@needs_data
def test_data_split_and_vocab(task):
    from minrnn.tasks.shakespeare import SHA256
    assert hashlib.sha256(DATA.read_bytes()).hexdigest() == SHA256 == task.sha256
    assert len(task.vocab.chars) == 65 and task.vocab.chars[:3] == ["\n", " ", "!"]
    assert (len(task.splits["train"]), len(task.splits["val"])) == (1_003_854, 111_540)
    assert task.vocab.decode(task.splits["train"][:14].tolist()) == "First Citizen:"
    with pytest.raises(ValueError, match="unknown"):
        task.vocab.encode("caf\u00e9")
    with pytest.raises(ValueError, match="no test split"):
        task.windows("test")


@needs_data
def test_batches_are_pure_and_sliceable(task):
    from minrnn.tasks.base import example_ints
    x, y = task.train_batch(7, 3, 0, 6)
    x2, y2 = task.train_batch(7, 3, 0, 6)
    parts = [task.train_batch(7, 3, lo, lo + 2) for lo in (0, 2, 4)]
    assert torch.equal(x, x2) and torch.equal(x, torch.cat([p[0] for p in parts]))
    assert torch.equal(y, torch.cat([p[1] for p in parts]))
    assert torch.equal(x[:, 1:], y[:, :-1])
    off = example_ints(3, 7, 0, 6, len(task.splits["train"]) - 16)
    assert torch.equal(x[2], task.splits["train"][off[2]:off[2] + 16])
    assert not torch.equal(task.train_batch(8, 3, 0, 6)[0], x)  # another step, other windows
    w = task.windows("val")
    assert w.shape == (4, 17)
    full = (len(task.splits["val"]) - 1) // 16
    assert torch.equal(w[-1], task.splits["val"][(full - 1) * 16:(full - 1) * 16 + 17])


def test_cpu_preset_equal_params():
    from minrnn.tasks.shakespeare import ShakespeareTask, _CPU_MODELS
    counts = {a: count_params(make_model(a, vocab_size=65, block_size=256, **_CPU_MODELS[a])) for a in ARCHS}
    assert counts == {"mingru": 464_769, "minlstm": 464_961, "transformer": 437_888, "gru": 460_585,
                      "lstm": 465_389}
    ref = counts["mingru"]  # every baseline within 10% of the model it is compared with
    assert all(abs(c / ref - 1) <= 0.10 for c in counts.values()), counts
    assert ShakespeareTask.preset("paper", "transformer")["n_layers"] == 6
    with pytest.raises(ValueError, match="preset"):
        ShakespeareTask.preset("gpu", "mingru")


@needs_data
@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_run_every_model(arch, tmp_path):
    from minrnn.train import train
    s = train("shakespeare", None, dict(model=arch, d_model=16, n_layers=2, n_heads=2, mlp_ratio=1.0,
                                        seq_len=16, eval_windows=8, batch_size=8, steps=8, eval_every=8, lr=1e-2,
                                        warmup_steps=2, threads=1, progress=False, data=str(DATA),
                                        out_dir=str(tmp_path)))
    assert s["steps"] == 8 and s["best_val_loss"] < math.log(65)  # below a uniform guess after 8 steps


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_generation_equals_argmax_of_full_forward(arch):
    torch.manual_seed(1)
    m = make_model(arch, vocab_size=11, d_model=16, n_layers=2, n_heads=2, mlp_ratio=1.0, block_size=64).eval()
    for p in m.parameters():  # larger weights: a non-trivial argmax sequence
        p.data.mul_(3.0)
    prompt = torch.randint(0, 11, (2, 5))
    new, _ = generate(m, prompt, 20, temperature=0)
    full = torch.cat([prompt, new], 1)
    with torch.no_grad():
        logits, _ = m(full[:, :-1])
    assert torch.equal(logits[:, 4:].argmax(-1), new)
    assert len(set(new.flatten().tolist())) >= 2  # not a constant sequence


def test_transformer_sliding_window_generation():
    torch.manual_seed(2)
    m = make_model("transformer", vocab_size=7, d_model=16, n_layers=1, n_heads=2, block_size=6).eval()
    for p in m.parameters():
        p.data.mul_(3.0)
    prompt = torch.randint(0, 7, (1, 9))  # longer than the block: generation keeps the last 6
    new, _ = generate(m, prompt, 8, temperature=0)
    seq = torch.cat([prompt, new], 1)
    with torch.no_grad():
        for i in range(8):
            ctx = seq[:, 9 + i - 6:9 + i]
            assert m(ctx)[0][0, -1].argmax().item() == new[0, i].item()
    with pytest.raises(ValueError, match="block_size=6"):
        m(torch.zeros(1, 7, dtype=torch.int64))


@pytest.mark.parametrize("arch", ["mingru", "minlstm"])
@pytest.mark.parametrize("conv", [0, 4])
def test_fast_step_equals_forward(arch, conv):
    torch.manual_seed(3)
    m = make_model(arch, input_dim=5, output_dim=3, d_model=12, n_layers=3, conv_kernel=conv).eval()
    x = torch.randn(2, 9, 5)
    with torch.no_grad():
        y, st_full = m(x)
        st, outs = None, []
        for t in range(9):
            o, st = m.step(x[:, t], st)
            outs.append(o)
    torch.testing.assert_close(torch.stack(outs, 1), y, rtol=1e-5, atol=1e-5)
    for (w1, h1), (w2, h2) in zip(st, st_full):
        torch.testing.assert_close(h1, h2, rtol=1e-5, atol=1e-5)
        if conv:
            torch.testing.assert_close(w1, w2)


@needs_data
def test_cli_train_sample_eval_plot(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    py = [sys.executable, "-m", "minrnn.cli"]
    run = lambda *a: subprocess.run([*py, *a], capture_output=True, text=True, env=env, timeout=300)  # noqa: E731
    r = run("train", "shakespeare", "--model", "minlstm", "--d-model", "16", "--n-layers", "1", "--seq-len", "16",
            "--batch-size", "4", "--steps", "4", "--eval-every", "2", "--eval-windows", "4", "--threads", "1",
            "--data", str(DATA), "--out-dir", str(tmp_path), "--run-name", "r", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "done: 4 steps" in r.stdout
    rd = str(tmp_path / "r")
    r = run("sample", rd, "--prompt", "ROMEO:", "--tokens", "20", "--temperature", "0.8", "--top-k", "5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ROMEO:") and "tokens/s" in r.stdout
    r = run("eval", rd, "--ckpt", "last")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout.strip().splitlines()[-1])
    last = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()][-1]
    assert ev["step"] == 4 and ev["loss"] == pytest.approx(last["val_loss"], rel=1e-6)
    r = run("plot", rd, rd, "--out", str(tmp_path / "c.png"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run("sample", rd, "--prompt", "\u00e9")
    assert r.returncode == 2 and "unknown" in r.stderr
    r = run("train", "shakespeare", "--data", str(tmp_path / "missing.txt"), "--steps", "1")
    assert r.returncode == 2 and "expected an existing file" in r.stderr
