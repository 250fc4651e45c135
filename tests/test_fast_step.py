"""The compiled generation step (`models/fast_step.py`, `csrc/step.c`) against the PyTorch model in fp64:
token by token vs the parallel forward, state continuity and mixing with `step`, fallbacks, weights that
change after the first call, `generate` fast vs PyTorch, and the sampler vs torch.multinomial."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TOL, assert_close

from minrnn.models import fast_step as fs
from minrnn.models.block import ModelConfig, SequenceModel
from minrnn.models.generate import _sample, generate

ROOT = Path(__file__).resolve().parents[1]
needs_kernel = pytest.mark.skipif(not fs.available(),
                                  reason=f"fast step kernel unavailable: {fs.unavailable_reason()}")
RTOL, ATOL = TOL[("linear", torch.float32)]

VARIANTS = {  # every ModelConfig option the kernel reads
    "default": {},
    "no-conv": {"conv_kernel": 0},
    "conv2-no-mlp": {"conv_kernel": 2, "mlp_ratio": 0.0},
    "layernorm-identity-unnormalized": {"norm": "layernorm", "candidate": "identity", "normalize": False},
}


def _model(cell: str, seed: int = 0, **kw) -> SequenceModel:
    """A small model with every parameter randomised (norm weights/biases too, so that none is trivial)."""
    torch.manual_seed(seed)
    cfg = {"d_model": 20, "n_layers": 3, "expansion": 1.5, "mlp_ratio": 1.5, "vocab_size": 13, **kw}
    m = SequenceModel(ModelConfig(cell=cell, **cfg)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def _tokens(m, B: int, T: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if m.cfg.vocab_size:
        return torch.randint(0, m.cfg.vocab_size, (B, T), generator=g)
    return torch.randn(B, T, m.cfg.input_dim, generator=g)


def _check_state(got, ref, what):
    for i, ((gw, gh), (rw, rh)) in enumerate(zip(got, ref)):
        if rw is None:
            assert gw is None, f"{what} block {i}: expected no conv window, got a tensor"
        else:
            assert_close(gw, rw, RTOL, ATOL, f"{what} block {i} window")
        assert_close(gh, rh, RTOL, ATOL, f"{what} block {i} h")


@needs_kernel
@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("B", [1, 3])
def test_tokens_equal_fp64_forward(cell, variant, B):
    m = _model(cell, **VARIANTS[variant])
    m64 = copy.deepcopy(m).double()
    x = _tokens(m, B, 12)
    with torch.no_grad():
        ref, ref_state = m64(x)
        assert fs.why_not(m) is None
        state, outs = None, []
        for t in range(x.shape[1]):
            o, state = fs.fast_step(m, x[:, t], state)
            outs.append(o)
        slow = None
        for t in range(x.shape[1]):
            so, slow = m.step(x[:, t], slow)
    assert_close(torch.stack(outs, 1), ref, RTOL, ATOL, f"{cell} {variant} B={B} logits")
    assert_close(outs[-1], so, RTOL, ATOL, f"{cell} {variant} B={B} vs fp32 PyTorch step")
    _check_state(state, ref_state, f"{cell} {variant} B={B}")


@needs_kernel
@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_cpu_preset_size_and_vector_io(cell):
    """The Shakespeare cpu preset's shapes (d 128, H 256/192, MLP 192), and a vector-in/vector-out model."""
    exp = 2.0 if cell == "mingru" else 1.5
    for kw in ({"d_model": 128, "expansion": exp, "vocab_size": 65},
               {"vocab_size": 0, "input_dim": 7, "output_dim": 5}):
        m = _model(cell, seed=3, **kw)
        x = _tokens(m, 2, 5)
        with torch.no_grad():
            ref, ref_state = copy.deepcopy(m).double()(x.double() if x.is_floating_point() else x)
            state, outs = None, []
            for t in range(x.shape[1]):
                o, state = fs.fast_step(m, x[:, t], state)
                outs.append(o)
        assert_close(torch.stack(outs, 1), ref, RTOL, ATOL, f"{cell} {kw} outputs")
        _check_state(state, ref_state, f"{cell} {kw}")


@needs_kernel
@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_prefill_then_fast_step_and_mixing(cell):
    """forward(x[:, :k]) -> fast_step -> PyTorch step -> fast_step equals one fp64 forward over x."""
    m = _model(cell, seed=4)
    x = _tokens(m, 3, 10)
    with torch.no_grad():
        ref, ref_state = copy.deepcopy(m).double()(x)
        out, state = m(x[:, :5])  # B = 3: the prefill's conv window is a non-contiguous view
        outs = [out]
        for t in range(5, 10):
            o, state = (m.step if t == 7 else lambda a, s: fs.fast_step(m, a, s))(x[:, t], state)
            outs.append(o[:, None])
    assert_close(torch.cat(outs, 1), ref, RTOL, ATOL, f"{cell} prefill + mixed steps")
    _check_state(state, ref_state, f"{cell} prefill + mixed steps")


@needs_kernel
def test_fast_step_does_not_modify_its_input_state():
    m = _model("mingru", seed=5)
    x = _tokens(m, 2, 3)
    with torch.no_grad():
        _, s0 = m(x)
        before = [(w.clone(), h.clone()) for w, h in s0]
        a, s1 = fs.fast_step(m, x[:, 0], s0)
        b, _ = fs.fast_step(m, x[:, 0], s0)  # same input state again: same result
    assert torch.equal(a, b)
    for (w, h), (w0, h0) in zip(s0, before):
        assert torch.equal(w, w0) and torch.equal(h, h0)


@needs_kernel
def test_weights_changed_after_first_call_are_used():
    """In-place edits (also through .data, which bumps no version counter), optimizer steps, replaced
    parameter tensors and load_state_dict: the kernel reads the current weights every time."""
    m = _model("minlstm", seed=6)
    x = _tokens(m, 2, 1)[:, 0]
    opt = torch.optim.SGD(m.parameters(), lr=0.5)

    def changes():
        yield lambda: m.blocks[1].rnn.weight_ih_l0.data.mul_(1.5)
        yield lambda: m.head.bias.data.add_(1.0)

        def sgd():
            with torch.enable_grad():
                m.train()
                m(_tokens(m, 2, 4))[0].square().mean().backward()
                opt.step()
                m.eval()
        yield sgd
        yield lambda: setattr(m.blocks[0].mlp[0].weight, "data", torch.randn_like(m.blocks[0].mlp[0].weight))
        yield lambda: m.load_state_dict(_model("minlstm", seed=7).state_dict())

    for i, change in enumerate(changes()):
        with torch.no_grad():
            before, _ = fs.fast_step(m, x)
            change()
            got, _ = fs.fast_step(m, x)
            ref, _ = m.step(x)
        assert not torch.allclose(before, ref), f"change {i} did not change the model"
        assert_close(got, ref, RTOL, ATOL, f"after change {i}")


def test_fallbacks_give_the_pytorch_step(monkeypatch):
    m = _model("mingru", seed=8)
    x = _tokens(m, 2, 1)[:, 0]
    with torch.no_grad():
        ref, _ = m.step(x)
        m64 = copy.deepcopy(m).double()
        assert "fp32" in fs.why_not(m64)
        assert torch.equal(fs.fast_step(m64, x)[0], m64.step(x)[0])
        monkeypatch.setenv("MINRNN_DISABLE_FAST_STEP", "1")
        assert fs.why_not(m) == "disabled by MINRNN_DISABLE_FAST_STEP"
        assert torch.equal(fs.fast_step(m, x)[0], ref)
        _, t = generate(m, _tokens(m, 1, 3), 4)
        assert t["step"] == "PyTorch step (disabled by MINRNN_DISABLE_FAST_STEP)"
    monkeypatch.delenv("MINRNN_DISABLE_FAST_STEP")
    assert "grad enabled" in fs.why_not(m)  # outside no_grad: the kernel has no backward
    out, _ = fs.fast_step(m, x)
    assert out.requires_grad
    m.train()
    with torch.no_grad():
        assert "training" in fs.why_not(m)


def test_disable_native_env_falls_back():
    code = ("import torch\nfrom minrnn.models import fast_step as fs\nfrom minrnn.models.block import ModelConfig, "
            "SequenceModel\nfrom minrnn.models.generate import generate\ntorch.manual_seed(0)\n"
            "m = SequenceModel(ModelConfig(cell='minlstm', d_model=8, n_layers=1, vocab_size=5)).eval()\n"
            "x = torch.tensor([1, 2])\nwith torch.no_grad():\n"
            "    assert torch.equal(fs.fast_step(m, x)[0], m.step(x)[0])\n"
            "    print(fs.why_not(m))\nprint(generate(m, x[None], 3)[1]['step'])\n")
    env = dict(os.environ, MINRNN_DISABLE_NATIVE="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["native kernel unavailable: disabled by MINRNN_DISABLE_NATIVE",
                                     "PyTorch step (native kernel unavailable: disabled by MINRNN_DISABLE_NATIVE)"]


@needs_kernel
@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_generate_fast_equals_pytorch(cell):
    m = _model(cell, seed=9, vocab_size=11)
    prompt = _tokens(m, 3, 6)
    for temperature, top_k in ((0.0, 0), (0.9, 0), (1.0, 4)):
        runs = [generate(m, prompt, 25, temperature, top_k, torch.Generator().manual_seed(2), fast=f)
                for f in (True, False)]
        assert runs[0][1]["step"] == fs.STEP_KIND_NATIVE
        assert runs[1][1]["step"] == "PyTorch step (fast=False)"
        assert torch.equal(runs[0][0], runs[1][0]), f"{cell} T={temperature} k={top_k}: tokens differ"


@needs_kernel
def test_bad_input():
    m = _model("mingru", seed=10)
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"tokens: expected ids in \[0, 13\), got values in \[0, 13\]"):
            fs.fast_step(m, torch.tensor([0, 13]))
        with pytest.raises(ValueError, match="tokens: expected an int64 tensor"):
            fs.fast_step(m, torch.zeros(2, 3, dtype=torch.int64))
        with pytest.raises(ValueError, match=r"state\[0\] window: expected a tensor of shape \(2, 3, 20\), "
                                             r"got torch.float32 \(3, 3, 20\)"):
            fs.fast_step(m, torch.tensor([1, 2]), m.init_state(3))
        with pytest.raises(ValueError, match="state: expected a list of 3"):
            fs.fast_step(m, torch.tensor([1, 2]), m.init_state(2)[:2])
        dec = fs.Decoder(m, None, 2)
        with pytest.raises(ValueError, match=r"tok: expected contiguous int64 \(2,\)"):
            dec(torch.tensor([1, 2, 3]))
        before = [t.clone() for t in dec.state]
        with pytest.raises(IndexError, match=r"tok: expected ids in \[0, 13\), got \[1, -1\]"):
            dec(torch.tensor([1, -1]))
        assert all(torch.equal(a, b) for a, b in zip(dec.state, before))  # rejected before any write


def test_sample_is_torch_multinomial():
    """Same draws as torch.multinomial(p, 1) from the same generator (so fast and PyTorch generation match)."""
    for B, V, seed in ((1, 65, 0), (3, 11, 1), (2, 500, 2)):
        p = F.softmax(3 * torch.randn(B, V, generator=torch.Generator().manual_seed(seed)), -1)
        g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        ref = torch.stack([torch.multinomial(p, 1, generator=g1)[:, 0] for _ in range(300)])
        got = torch.stack([_sample(p, g2) for _ in range(300)])
        assert torch.equal(got, ref)
    with pytest.raises(ValueError, match="expected finite values"):
        _sample(torch.tensor([[0.5, float("nan")]]), None)


def test_info_says_which_generation_step():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    lines = {}
    for disable in ("", "1"):
        env["MINRNN_DISABLE_NATIVE"] = disable
        r = subprocess.run([sys.executable, "-m", "minrnn", "info"], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr
        lines[disable] = [x for x in r.stdout.splitlines() if x.startswith("generation step")]
    assert lines["1"] == ["generation step of minGRU/minLSTM LMs on cpu (fp32): PyTorch step (kernel unavailable: "
                          "disabled by MINRNN_DISABLE_NATIVE)"]
    if fs.available():
        assert lines[""][0].startswith("generation step of minGRU/minLSTM LMs on cpu (fp32): native C kernel")
