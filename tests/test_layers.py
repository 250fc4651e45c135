"""MinGRU / MinLSTM layers against an independent fp64 loop written from the paper's equations; parallel ==
step == chunked continuation; padding, lengths, reset, bidirectional; parameter counts; input errors."""
from __future__ import annotations

import pytest
import torch

from minrnn import MinGRU, MinLSTM
from minrnn.scan import available_impls

from conftest import assert_close, tol_for

IMPLS = available_impls()


def g_paper(x):
    # g(x) = x + 0.5 for x >= 0, sigmoid(x) for x < 0  (paper, section 3)
    return torch.where(x >= 0, x + 0.5, 1 / (1 + torch.exp(-x)))


def paper_loop(layer, x, h0=None):
    """Single-layer, single-direction fp64 reference straight from the paper's equations."""
    W, bias = layer.gate_params(0)[0].double(), layer.gate_params(0)[1]
    bias = torch.zeros(W.shape[0], dtype=torch.float64) if bias is None else bias.double()
    H = layer.hidden_size
    cand = g_paper if layer.candidate == "g" else (lambda v: v)
    h = torch.zeros(x.shape[0], H, dtype=torch.float64) if h0 is None else h0[0].double()
    out = []
    for t in range(x.shape[1]):
        k = x[:, t].double() @ W.T + bias
        if isinstance(layer, MinGRU):
            z = torch.sigmoid(k[:, :H])
            h = (1 - z) * h + z * cand(k[:, H:])
        else:
            f, i = torch.sigmoid(k[:, :H]), torch.sigmoid(k[:, H:2 * H])
            if layer.normalize:
                f, i = f / (f + i), i / (f + i)
            h = f * h + i * cand(k[:, 2 * H:])
        out.append(h)
    y = torch.stack(out, 1)
    if layer.proj_size is not None:
        p = layer.projs[0]
        y = y @ p.weight.double().T + (p.bias.double() if p.bias is not None else 0)
    return y, h.unsqueeze(0)


CONFIGS = [
    (MinGRU, dict(candidate="g")), (MinGRU, dict(candidate="identity")),
    (MinLSTM, dict(candidate="g")), (MinLSTM, dict(candidate="g", normalize=False)),
    (MinLSTM, dict(candidate="identity")),
]


# the log-space scan needs the positive candidate g (states must stay positive): identity is not paired with it
CASES = [(cls, kw, impl) for cls, kw in CONFIGS for impl in IMPLS if impl != "logspace" or kw["candidate"] == "g"]


@pytest.mark.parametrize("cls,kw,impl", CASES)
@pytest.mark.parametrize("T", [1, 63, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_matches_paper_equations(cls, kw, impl, T, dtype):
    torch.manual_seed(T)
    layer = cls(11, 13, proj_size=9, scan_impl=impl, **kw).to(dtype)
    x = torch.randn(3, T, 11, dtype=dtype, requires_grad=True)
    h0 = (torch.rand(1, 3, 13, dtype=dtype) + 0.1).requires_grad_()  # positive: valid for every impl
    y, h_n = layer(x, h0)
    ref_layer = cls(11, 13, proj_size=9, **kw).double()
    ref_layer.load_state_dict(layer.state_dict())
    xr, h0r = x.detach().double().requires_grad_(), h0.detach().double().requires_grad_()
    y_ref, hn_ref = paper_loop(ref_layer, xr, h0r)
    rtol, atol = tol_for(impl, dtype)
    assert_close(y, y_ref, rtol, atol, "y")
    assert_close(h_n, hn_ref, rtol, atol, "h_n")
    w = torch.randn_like(y_ref)
    got = torch.autograd.grad((y * w.to(dtype)).sum() + h_n.sum(), [x, h0] + list(layer.parameters()))
    ref = torch.autograd.grad((y_ref * w).sum() + hn_ref.sum(), [xr, h0r] + list(ref_layer.parameters()))
    names = ["dx", "dh0"] + [f"d{n}" for n, _ in layer.named_parameters()]
    for gg, rr, name in zip(got, ref, names):
        assert_close(gg, rr, *tol_for(impl, dtype, "da" if name.startswith(("dweight_ih", "dbias_ih")) else ""), name)


def _multi(cls, impl, **kw):
    torch.manual_seed(0)
    return cls(6, 10, num_layers=3, proj_size=7, scan_impl=impl, **kw).double()


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("learn_h0", [False, True])
def test_parallel_equals_step_equals_chunked(cls, impl, with_h0, learn_h0):
    layer = _multi(cls, impl, learn_h0=learn_h0)
    if learn_h0:
        with torch.no_grad():
            layer.h0.uniform_(0.1, 0.9)
    x = torch.randn(2, 40, 6, dtype=torch.float64)
    h0 = torch.rand(3, 2, 10, dtype=torch.float64) + 0.1 if with_h0 else None
    y, h_n = layer(x, h0)
    h, ys = h0, []
    for t in range(40):
        y_t, h = layer.step(x[:, t], h)
        ys.append(y_t)
    assert_close(torch.stack(ys, 1), y, 1e-10, 1e-12, "step loop y")
    assert_close(h, h_n, 1e-10, 1e-12, "step loop h")
    for k in (1, 7, 20, 39):
        y1, h1 = layer(x[:, :k], h0)
        y2, h2 = layer(x[:, k:], h1)
        assert_close(torch.cat([y1, y2], 1), y, 1e-10, 1e-12, f"chunked y (k={k})")
        assert_close(h2, h_n, 1e-10, 1e-12, f"chunked h (k={k})")


LINEAR_IMPLS = [i for i in IMPLS if i != "logspace"]


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
@pytest.mark.parametrize("impl", LINEAR_IMPLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_batch_equals_each_sequence_alone(cls, impl, bidirectional):
    torch.manual_seed(1)
    layer = cls(5, 8, num_layers=2, bidirectional=bidirectional, scan_impl=impl).double()
    lengths = torch.tensor([9, 4, 1, 6])
    x = torch.randn(4, 9, 5, dtype=torch.float64)
    y, h_n = layer(x, lengths=lengths)
    y_m, h_m = layer(x, mask=torch.arange(9)[None] < lengths[:, None])
    assert_close(y_m, y, 0, 0, "mask vs lengths y")
    assert_close(h_m, h_n, 0, 0, "mask vs lengths h")
    for i, L in enumerate(lengths.tolist()):
        y_i, h_i = layer(x[i:i + 1, :L])
        assert_close(y[i:i + 1, :L], y_i, 1e-10, 1e-12, f"y of sequence {i}")
        assert_close(h_n[:, i:i + 1], h_i, 1e-10, 1e-12, f"h_n of sequence {i}")
        assert (y[i, L:] == 0).all()
    # what sits in the padding does not matter
    x2 = x.clone()
    x2[0 + 1, 4:] = 1e3
    y2, h2 = layer(x2, lengths=lengths)
    assert_close(y2, y, 0, 0, "y with garbage padding")
    assert_close(h2, h_n, 0, 0, "h_n with garbage padding")


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
@pytest.mark.parametrize("impl", LINEAR_IMPLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("learn_h0", [False, True])
def test_reset_equals_separate_runs(cls, impl, bidirectional, learn_h0):
    torch.manual_seed(2)
    layer = cls(5, 8, num_layers=2, bidirectional=bidirectional, learn_h0=learn_h0, scan_impl=impl).double()
    if learn_h0:
        with torch.no_grad():
            layer.h0.normal_()
    x = torch.randn(2, 12, 5, dtype=torch.float64)
    starts = [[0, 3, 8], [0, 5]]
    reset = torch.zeros(2, 12, dtype=torch.bool)
    for i, s in enumerate(starts):
        reset[i, s] = True
    y, _ = layer(x, reset=reset)
    for i, s in enumerate(starts):
        for lo, hi in zip(s, s[1:] + [12]):
            y_seg, _ = layer(x[i:i + 1, lo:hi])
            assert_close(y[i:i + 1, lo:hi], y_seg, 1e-10, 1e-12, f"segment {lo}:{hi} of sequence {i}")


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_bidirectional_has_own_weights_and_time_aligned_outputs(cls):
    torch.manual_seed(3)
    bi = cls(5, 8, bidirectional=True).double()
    fwd, bwd = cls(5, 8).double(), cls(5, 8).double()
    with torch.no_grad():
        for one, i in ((fwd, 0), (bwd, 1)):
            for p, q in zip(one.gate_params(0), bi.gate_params(i)):
                p.copy_(q)
    assert not torch.equal(bi.weight_ih_l0, bi.weight_ih_l0_reverse)
    x = torch.randn(2, 10, 5, dtype=torch.float64)
    y, h_n = bi(x)
    yf, hf = fwd(x)
    yb, hb = bwd(x.flip(1))
    assert_close(y[..., :8], yf, 1e-12, 1e-12, "forward half")
    assert_close(y[..., 8:], yb.flip(1), 1e-12, 1e-12, "backward half, back in time order")
    assert_close(h_n, torch.cat([hf, hb]), 1e-12, 1e-12, "h_n = (forward last, backward at t=0)")
    with pytest.raises(RuntimeError, match="bidirectional"):
        bi.step(x[:, 0])


@pytest.mark.parametrize("d_x,d_h", [(64, 64), (128, 128), (96, 37)])
def test_parameter_counts_match_paper_and_ratio_to_cudnn_cells(d_x, d_h):
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(MinGRU(d_x, d_h, bias=False)) == 2 * d_h * d_x
    assert count(MinLSTM(d_x, d_h, bias=False)) == 3 * d_h * d_x
    assert count(MinGRU(d_x, d_h)) == 2 * d_h * d_x + 2 * d_h
    assert count(MinLSTM(d_x, d_h)) == 3 * d_h * d_x + 3 * d_h
    assert count(MinGRU(d_x, d_h, proj_size=d_x)) == 2 * d_h * d_x + 2 * d_h + d_h * d_x + d_x
    assert count(MinGRU(d_x, expansion=2)) == 2 * (2 * d_x) * d_x + 2 * (2 * d_x) + 2 * d_x * d_x + d_x
    gru, lstm = torch.nn.GRU(d_x, d_h, bias=False), torch.nn.LSTM(d_x, d_h, bias=False)
    assert count(gru) == 3 * d_h * (d_x + d_h) and count(lstm) == 4 * d_h * (d_x + d_h)
    # e.g. d_x = d_h: minGRU has 1/3 of GRU's weights, minLSTM 3/8 of LSTM's
    assert count(MinGRU(d_x, d_h, bias=False)) / count(gru) == pytest.approx(2 * d_x / (3 * (d_x + d_h)))
    assert count(MinLSTM(d_x, d_h, bias=False)) / count(lstm) == pytest.approx(3 * d_x / (4 * (d_x + d_h)))


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_bf16_layer_forward(cls):
    torch.manual_seed(4)
    layer = cls(16, 24).bfloat16()
    ref = cls(16, 24).double()
    ref.load_state_dict(layer.state_dict())  # copies the bf16-rounded weights into fp64
    x = torch.randn(2, 300, 16).bfloat16()
    y, _ = layer(x)
    y_ref, _ = ref(x.double())
    assert y.dtype == torch.bfloat16
    # bf16 matmul and gate math round to 8 mantissa bits; the scan itself accumulates in fp32
    assert_close(y, y_ref, *tol_for("chunked", torch.bfloat16), "bf16 y")


def test_dropout_only_between_layers_and_only_in_training():
    torch.manual_seed(5)
    layer = MinGRU(4, 6, num_layers=2, dropout=0.5).double()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    layer.eval()
    assert torch.equal(layer(x)[0], layer(x)[0])
    layer.train()
    assert not torch.equal(layer(x)[0], layer(x)[0])
    single = MinGRU(4, 6, dropout=0.5).double().train()  # one layer: nothing to drop between
    assert torch.equal(single(x)[0], single(x)[0])


@pytest.mark.parametrize("call,exc,msg", [
    (lambda m: m(torch.randn(3, 4)), ValueError, "expected shape (B, T, input_size) with input_size=4, got (3, 4)"),
    (lambda m: m(torch.randn(2, 3, 5)), ValueError, "input_size=4, got (2, 3, 5)"),
    (lambda m: m(torch.ones(2, 3, 4, dtype=torch.long)), TypeError, "floating-point tensor, got dtype torch.int64"),
    (lambda m: m(torch.randn(2, 3, 4).double()), TypeError, "expected dtype torch.float32"),
    (lambda m: m(torch.randn(2, 3, 4), torch.zeros(2, 6)), ValueError, "h0: expected shape (2, 2, 6)"),
    (lambda m: m(torch.randn(2, 3, 4), torch.zeros(2, 2, 6).double()), TypeError, "h0: expected dtype torch.float32"),
    (lambda m: m(torch.randn(2, 3, 4), torch.zeros(2, 2, 6, device="meta")), TypeError, "on meta"),
    (lambda m: m(torch.randn(2, 0, 4)), ValueError, "T = 0"),
    (lambda m: m(torch.randn(2, 3, 4), lengths=torch.tensor([3, 4])), ValueError, "expected values in [1, 3]"),
    (lambda m: m(torch.randn(2, 3, 4), mask=torch.ones(2, 3)), ValueError, "bool tensor of shape (2, 3)"),
    (lambda m: m(torch.randn(2, 3, 4), reset=torch.ones(2, 4, dtype=torch.bool)), ValueError, "shape (2, 3)"),
    (lambda m: m.step(torch.randn(2, 3, 4)), ValueError, "expected shape (B, input_size)"),
    (lambda m: m([[1.0]]), TypeError, "expected a torch.Tensor, got list"),
])
def test_bad_input_errors(call, exc, msg):
    m = MinGRU(4, 6, num_layers=2)
    with pytest.raises(exc) as e:
        call(m)
    assert msg in str(e.value)


@pytest.mark.parametrize("kw,msg", [
    (dict(hidden_size=0), "hidden_size: expected a positive int, got 0"),
    (dict(candidate="tanh"), "candidate: expected one of"),
    (dict(dropout=1.5), "dropout: expected a value in [0, 1)"),
    (dict(scan_impl="cuda"), "scan_impl: expected one of"),
    (dict(hidden_size=8, expansion=2), "not both"),
    (dict(num_layers=0), "num_layers: expected a positive int"),
])
def test_bad_config_errors(kw, msg):
    with pytest.raises(ValueError) as e:
        MinLSTM(4, **kw)
    assert msg in str(e.value)


def test_logspace_rejects_what_it_cannot_represent():
    x = torch.randn(1, 5, 4)
    with pytest.raises(ValueError, match="positive h0"):
        MinGRU(4, 6, scan_impl="logspace")(x, -torch.ones(1, 1, 6))
    with pytest.raises(ValueError, match="candidate='g'"):
        MinGRU(4, 6, candidate="identity", scan_impl="logspace")(x)
    with pytest.raises(ValueError, match="mask"):
        MinGRU(4, 6, scan_impl="logspace")(x, lengths=torch.tensor([3]))


@pytest.mark.parametrize("impl", LINEAR_IMPLS)
def test_autocast_bf16_with_learned_h0(impl):
    torch.manual_seed(6)
    layer = MinGRU(8, 12, learn_h0=True, scan_impl=impl)
    with torch.no_grad():
        layer.h0.normal_()
    x = torch.randn(2, 20, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, h_n = layer(x)
    y_ref, _ = layer.double()(x.double())
    assert y.dtype == torch.bfloat16
    assert_close(y, y_ref, *tol_for(impl, torch.bfloat16), "autocast y")
