"""The paper's block and SequenceModel: full forward == step loop == chunked continuation, with the causal
conv on and off, tokens and vectors; causality; config and input errors."""
from __future__ import annotations

import pytest
import torch

from minrnn.models import ModelConfig, SequenceModel

from conftest import assert_close


def _model(cell, conv, tokens=True, **kw):
    torch.manual_seed(0)
    io = dict(vocab_size=11) if tokens else dict(input_dim=5, output_dim=3)
    cfg = ModelConfig(cell=cell, d_model=12, n_layers=2, expansion=1.5, conv_kernel=conv, **io, **kw)
    return SequenceModel(cfg).double().eval()


def _inputs(tokens, T=30):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 11, (2, T), generator=g) if tokens else torch.randn(2, T, 5, generator=g,
                                                                                 dtype=torch.float64)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("conv", [0, 4])
@pytest.mark.parametrize("tokens", [True, False])
def test_forward_equals_step_equals_chunked(cell, conv, tokens):
    model = _model(cell, conv, tokens)
    x = _inputs(tokens)
    out, state = model(x)
    s, outs = model.init_state(2), []
    for t in range(x.shape[1]):
        o, s = model.step(x[:, t], s)
        outs.append(o)
    assert_close(torch.stack(outs, 1), out, 1e-10, 1e-12, "step loop")
    for k in (1, 3, 17, 29):
        o1, s1 = model(x[:, :k])
        o2, s2 = model(x[:, k:], s1)
        assert_close(torch.cat([o1, o2], 1), out, 1e-10, 1e-12, f"chunked (k={k})")
        for (w2, h2), (w, h) in zip(s2, state):
            assert_close(h2, h, 1e-10, 1e-12, "rnn state")
            if conv:
                assert_close(w2, w, 1e-10, 1e-12, "conv window")


@pytest.mark.parametrize("conv", [0, 4])
def test_causal(conv):
    model = _model("mingru", conv)
    x = _inputs(True)
    x2 = x.clone()
    x2[:, 20:] = (x2[:, 20:] + 1) % 11
    o, _ = model(x)
    o2, _ = model(x2)
    assert_close(o2[:, :20], o[:, :20], 0, 0, "outputs before the change")
    assert (o2[:, 20] - o[:, 20]).abs().max() > 1e-6


def test_conv_window_is_what_step_needs_for_o1_generation():
    model = _model("minlstm", 4)
    s = model.init_state(3)
    assert s[0][0].shape == (3, 3, 12) and s[0][1].shape == (1, 3, 18)


def test_reset_in_model_equals_separate_runs():
    model = _model("mingru", 0, tokens=False)
    x = _inputs(False, 16)
    reset = torch.zeros(2, 16, dtype=torch.bool)
    reset[:, [0, 6]] = True
    o, _ = model(x, reset=reset)
    o1, _ = model(x[:, :6])
    o2, _ = model(x[:, 6:])
    assert_close(o, torch.cat([o1, o2], 1), 1e-10, 1e-12, "reset")
    with pytest.raises(ValueError, match="conv_kernel=0"):
        _model("mingru", 4, tokens=False)(x, reset=reset)


@pytest.mark.parametrize("kw,msg", [
    (dict(cell="gru", vocab_size=5), "cell: expected 'mingru' or 'minlstm', got 'gru'"),
    (dict(vocab_size=0), "expected vocab_size > 0"),
    (dict(vocab_size=5, conv_kernel=1), "conv_kernel: expected 0 (off) or >= 2, got 1"),
    (dict(vocab_size=5, norm="batchnorm"), "norm: expected"),
])
def test_config_errors(kw, msg):
    with pytest.raises(ValueError) as e:
        ModelConfig(**kw)
    assert msg in str(e.value)


def test_input_errors():
    with pytest.raises(ValueError, match=r"tokens: expected an int64 tensor of shape \(B, T\)"):
        _model("mingru", 4)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="input_dim=5"):
        _model("mingru", 4, tokens=False)(torch.randn(2, 5, 4, dtype=torch.float64))
