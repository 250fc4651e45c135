"""The fused C kernels of the cpu backend (scan/cpu.py, csrc/fused.c) against the fp64 reference: gate math (scan/cells.coeffs)
+ sequential scan (scan/reference.py). Values, dL/dk and dL/dh0 (full loss and through h_n only), every
cell/candidate/normalisation, awkward shapes, padding masks and resets, extreme pre-activations, NaN, threads,
the layer route and its fallbacks, gradcheck, errors."""
from __future__ import annotations

import functools

import pytest
import torch

from minrnn.layers import MinGRU, MinLSTM
from minrnn.scan import cells
from minrnn.scan import cpu as native
from minrnn.scan.cpu import fused_cell_scan, fused_linear_cell_scan
from minrnn.scan.reference import scan_reference

from conftest import assert_close

pytestmark = pytest.mark.skipif(not native.available(),
                                reason=f"no C compiler / native kernels: {native.unavailable_reason()}")

TOL = {torch.float64: (1e-11, 1e-12), torch.float32: (2e-5, 2e-5)}
VARIANTS = [("mingru", False, "g"), ("mingru", False, "identity"), ("minlstm", True, "g"),
            ("minlstm", True, "identity"), ("minlstm", False, "g"), ("minlstm", False, "identity")]
NG = {"mingru": 2, "minlstm": 3}


def inputs(cell: str, B: int, T: int, H: int, seed: int, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(B, T, NG[cell] * H, generator=g, dtype=torch.float64) * scale
    h0 = torch.randn(B, H, generator=g, dtype=torch.float64)
    w = torch.randn(B, T, H, generator=g, dtype=torch.float64)  # loss = sum(w * h) + sum(h_n)
    return k, h0, w


def ref_states(cell, k, h0, candidate, normalize):
    a, b = cells.coeffs(cell, k, candidate, normalize)
    return scan_reference(a, b, h0)


@functools.lru_cache(maxsize=None)
def reference(cell, normalize, candidate, B, T, H, seed, hn_only):
    k, h0, w = inputs(cell, B, T, H, seed)
    k.requires_grad_(), h0.requires_grad_()
    h = ref_states(cell, k, h0, candidate, normalize)
    loss = h[:, -1].sum() if hn_only else (h * w).sum() + h[:, -1].sum()
    return (h.detach(), *torch.autograd.grad(loss, (k, h0)))


def check(cell, normalize, candidate, B, T, H, dtype, seed=0, hn_only=False):
    k, h0, w = inputs(cell, B, T, H, seed)
    k, h0 = k.to(dtype).requires_grad_(), h0.to(dtype).requires_grad_()
    h = fused_cell_scan(cell, k, h0, candidate=candidate, normalize=normalize)
    loss = h[:, -1].sum() if hn_only else (h * w.to(dtype)).sum() + h[:, -1].sum()
    dk, dh0 = torch.autograd.grad(loss, (k, h0))
    h_ref, dk_ref, dh0_ref = reference(cell, normalize, candidate, B, T, H, seed, hn_only)
    rtol, atol = TOL[dtype]
    assert h.dtype == dtype and dk.dtype == dtype
    assert_close(h, h_ref, rtol, atol, "h")
    assert_close(dk, dk_ref, rtol, atol, "dL/dk")
    assert_close(dh0, dh0_ref, rtol, atol, "dL/dh0")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("T", [1, 2, 63, 1000])
@pytest.mark.parametrize("cell,normalize,candidate", VARIANTS)
def test_matches_reference(cell, normalize, candidate, T, dtype):
    check(cell, normalize, candidate, 2, T, 37, dtype, seed=T)


@pytest.mark.parametrize("cell,normalize,candidate", [("mingru", False, "g"), ("minlstm", True, "g")])
def test_long_sequence_and_gradient_through_h_n_only(cell, normalize, candidate):
    check(cell, normalize, candidate, 1, 4096, 13, torch.float32, seed=1, hn_only=True)
    check(cell, normalize, candidate, 2, 63, 130, torch.float64, seed=2, hn_only=True)  # H > one vector block


@pytest.mark.parametrize("cell,normalize,candidate", VARIANTS)
def test_extreme_preactivations(cell, normalize, candidate):
    """Gates saturated to 0/1 (|k| up to 1e4): no overflow, no NaN, same as the softplus-based reference."""
    g = torch.Generator().manual_seed(3)
    H = 11
    k = torch.randn(2, 40, NG[cell] * H, generator=g, dtype=torch.float64)
    k = k * torch.tensor([1.0, 30.0, 100.0, 1e4], dtype=torch.float64)[torch.randint(0, 4, k.shape, generator=g)]
    h0 = torch.randn(2, H, generator=g, dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        kk, hh = k.to(dtype).requires_grad_(), h0.to(dtype).requires_grad_()
        h = fused_cell_scan(cell, kk, hh, candidate=candidate, normalize=normalize)
        dk, dh0 = torch.autograd.grad(h.sum(), (kk, hh))
        kr, hr = k.clone().requires_grad_(), h0.clone().requires_grad_()
        h_ref = ref_states(cell, kr, hr, candidate, normalize)
        dk_ref, dh0_ref = torch.autograd.grad(h_ref.sum(), (kr, hr))
        assert torch.isfinite(h).all() and torch.isfinite(dk).all()
        rtol, atol = TOL[dtype]
        assert_close(h, h_ref, rtol, atol, f"h {dtype}")
        assert_close(dk, dk_ref, rtol, atol, f"dk {dtype}")
        assert_close(dh0, dh0_ref, rtol, atol, f"dh0 {dtype}")


def test_nan_propagates_from_its_step_on():
    k, h0, _ = inputs("mingru", 1, 10, 4, seed=4)
    k[0, 5, 1] = float("nan")  # z of unit 1 at t = 5
    h = fused_cell_scan("mingru", k, h0)
    assert torch.isfinite(h[0, :5]).all() and torch.isfinite(h[0, :, 0]).all()
    assert torch.isnan(h[0, 5:, 1]).all()


def test_without_h0_and_threads_agree_bitwise():
    """Rows split across threads (B < threads) give the same bits as one thread; h0=None means zeros."""
    k, _, w = inputs("minlstm", 1, 600, 130, seed=5)
    zeros = torch.zeros(1, 130, dtype=torch.float64)
    one = fused_cell_scan("minlstm", k, None)
    assert torch.equal(one, fused_cell_scan("minlstm", k, zeros))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = fused_cell_scan("minlstm", k, None)
        kk = k.clone().requires_grad_()
        (fused_cell_scan("minlstm", kk, None) * w).sum().backward()
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two)
    k1 = k.clone().requires_grad_()
    (fused_cell_scan("minlstm", k1, None) * w).sum().backward()
    assert torch.equal(k1.grad, kk.grad)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_gradcheck(cell):
    k, h0, _ = inputs(cell, 2, 5, 3, seed=6)
    assert torch.autograd.gradcheck(lambda k, h0: fused_cell_scan(cell, k, h0),
                                    (k.requires_grad_(), h0.requires_grad_()))


def _count_layer_ops(monkeypatch) -> list:
    calls = []
    op = native.cpu_linear_cell
    monkeypatch.setattr(native, "cpu_linear_cell", lambda *a: calls.append(1) or op(*a))
    return calls


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_layer_route_matches_reference_layer(cls, monkeypatch):
    """Layers with scan_impl='cpu' run one custom op per layer direction (matmul + kernel; 2 layers,
    bidirectional, learned h0) and match the same weights on the reference backend."""
    calls = _count_layer_ops(monkeypatch)
    torch.manual_seed(7)
    kw = dict(num_layers=2, bidirectional=True, learn_h0=True, dtype=torch.float64)
    fast, ref = cls(5, 9, scan_impl="cpu", **kw), cls(5, 9, scan_impl="reference", **kw)
    with torch.no_grad():
        for p in fast.parameters():
            p.normal_()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(3, 17, 5, dtype=torch.float64)
    h0 = torch.randn(4, 3, 9, dtype=torch.float64)
    outs = {}
    for name, m in (("fused", fast), ("ref", ref)):
        m.zero_grad()
        y, hn = m(x, h0)
        (y.square().sum() + hn.sum()).backward()
        outs[name] = [y, hn] + [p.grad.clone() for p in m.parameters() if p.grad is not None]
    assert len(calls) == 4  # 2 layers x 2 directions, in the fused run only
    assert len(outs["fused"]) == len(outs["ref"])  # the same parameters got gradients (h0: none, h0 is given)
    for got, want in zip(outs["fused"], outs["ref"]):
        assert_close(got, want, 1e-11, 1e-12, "fused")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell,normalize,candidate", VARIANTS)
def test_mask_and_reset_match_reference(cell, normalize, candidate, dtype):
    """Padding (anywhere, including t = 0 and overlapping resets) and resets from zeros or from h_reset, inside
    the kernel: states and gradients w.r.t. k, h0 and h_reset equal the generic route on the reference scan."""
    B, T, H = 3, 50, 19
    k, h0, w = inputs(cell, B, T, H, seed=9)
    g = torch.Generator().manual_seed(10)
    mask = torch.rand(B, T, generator=g) > 0.3
    mask[0, :3] = False
    mask[2] = True
    reset = torch.rand(B, T, generator=g) > 0.8
    reset[0, 0] = reset[1, 0] = reset[0, 1] = True  # reset on padding: the mask wins
    h_reset = torch.randn(B, H, generator=g, dtype=torch.float64)
    for m, r, hr in ((mask, None, None), (None, reset, None), (None, reset, h_reset), (mask, reset, h_reset)):
        outs = []
        for impl, dt in (("cpu", dtype), ("reference", torch.float64)):
            leaves = [t.to(dt).requires_grad_() for t in (k, h0, h_reset)]
            hh = cells.cell_scan(cell, leaves[0], leaves[1], candidate=candidate, normalize=normalize, backend=impl,
                                 mask=m, reset=r, h_reset=leaves[2] if hr is not None else None)
            loss = (hh * w.to(dt)).sum() + hh[:, -1].sum()
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
            outs.append([hh] + [torch.zeros_like(t) if gr is None else gr for t, gr in zip(leaves, grads)])
        rtol, atol = TOL[dtype]
        for name, got, want in zip(("h", "dk", "dh0", "dh_reset"), *outs):
            assert_close(got, want, rtol, atol, f"{name} mask={m is not None} reset={r is not None}")


def test_layer_padding_and_reset_take_the_fused_kernel(monkeypatch):
    calls = _count_layer_ops(monkeypatch)
    torch.manual_seed(8)
    fast = MinGRU(4, 6, scan_impl="cpu", learn_h0=True, dtype=torch.float64)
    ref = MinGRU(4, 6, scan_impl="reference", learn_h0=True, dtype=torch.float64)
    with torch.no_grad():
        fast.h0.normal_()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, 12, 4, dtype=torch.float64)
    reset = torch.zeros(2, 12, dtype=torch.bool)
    reset[:, 5] = True
    for kw in (dict(lengths=torch.tensor([12, 7])), dict(reset=reset)):
        grads = []
        for m in (fast, ref):
            m.zero_grad()
            y, hn = m(x, **kw)
            (y.square().sum() + hn.sum()).backward()
            grads.append([y, hn, m.h0.grad.clone(), m.weight_ih_l0.grad.clone()])
        for got, want in zip(*grads):
            assert_close(got, want, 1e-12, 1e-12, str(list(kw)))
    assert len(calls) == 2


def test_bf16_layer_on_the_cpu_backend():
    """bf16 (and CPU autocast) on scan_impl='cpu': the gate math in PyTorch and the C scan in fp32, cast back."""
    torch.manual_seed(17)
    layer = MinGRU(4, 6, scan_impl="cpu").to(torch.bfloat16)
    ref = MinGRU(4, 6, scan_impl="reference").double()
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(2, 5, 4, dtype=torch.bfloat16)
    y, hn = layer(x)
    assert y.dtype == torch.bfloat16 and hn.shape == (1, 2, 6)
    assert_close(y, ref(x.double())[0], 3e-2, 3e-2, "bf16 y")


def test_errors():
    k = torch.zeros(2, 3, 8)
    with pytest.raises(ValueError, match="cell: expected"):
        fused_cell_scan("gru", k)
    with pytest.raises(ValueError, match="divisible by 3"):
        fused_cell_scan("minlstm", k)
    with pytest.raises(ValueError, match=r"shape \(B, T, n_gates \* H\)"):
        fused_cell_scan("mingru", torch.zeros(3, 8))
    with pytest.raises(TypeError, match="float32/float64 CPU"):
        fused_cell_scan("mingru", k.to(torch.bfloat16))
    with pytest.raises(ValueError, match=r"h0: expected"):
        fused_cell_scan("mingru", k, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="candidate"):
        fused_cell_scan("mingru", k, candidate="tanh")
    with pytest.raises(ValueError, match="mask: expected a bool tensor"):
        fused_cell_scan("mingru", k, mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="h_reset: expected"):
        fused_cell_scan("mingru", k, reset=torch.ones(2, 3, dtype=torch.bool), h_reset=torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"bias: expected"):
        fused_cell_scan("mingru", k, bias=torch.zeros(7))
    with pytest.raises(ValueError, match=r"weight: expected"):
        fused_linear_cell_scan("mingru", torch.zeros(2, 3, 5), torch.zeros(8, 4))
    with pytest.raises(ValueError, match=r"x: expected a 3-d tensor"):
        fused_linear_cell_scan("mingru", torch.zeros(3, 5), torch.zeros(8, 5))


# ---- the gate bias inside the kernel, strided output gradients, the fused layer route (matmul + kernel) ----
MASKS = {"none": (None, None, False), "mask+reset": (0.3, 0.85, True)}


def _masks(B, T, kind, seed):
    p_pad, p_reset, with_hr = MASKS[kind]
    if p_pad is None:
        return None, None, False
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, generator=g) > p_pad, torch.rand(B, T, generator=g) > p_reset, with_hr


@pytest.mark.parametrize("kind", list(MASKS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell,normalize,candidate", VARIANTS)
def test_bias_inside_kernel_matches_reference(cell, normalize, candidate, dtype, kind):
    """fused_cell_scan(k, bias=c) equals the reference on k + c: states, dL/dk, dL/dc (summed in the kernel),
    dL/dh0 and dL/dh_reset, with and without padding/resets."""
    B, T, H = 3, 63, 19
    k, h0, w = inputs(cell, B, T, H, seed=11)
    g = torch.Generator().manual_seed(12)
    c = torch.randn(NG[cell] * H, generator=g, dtype=torch.float64)
    hr = torch.randn(B, H, generator=g, dtype=torch.float64)
    mask, reset, with_hr = _masks(B, T, kind, 13)
    outs = []
    for impl, dt in (("cpu", dtype), ("reference", torch.float64)):
        kk, cc, hh, rr = (t.to(dt).requires_grad_() for t in (k, c, h0, hr))
        ex = dict(mask=mask, reset=reset, h_reset=rr if with_hr else None)
        if impl == "cpu":
            h = fused_cell_scan(cell, kk, hh, candidate=candidate, normalize=normalize, bias=cc, **ex)
        else:
            h = cells.cell_scan(cell, kk + cc, hh, candidate=candidate, normalize=normalize, backend=impl, **ex)
        loss = (h * w.to(dt)).sum() + h[:, -1].sum()
        grads = torch.autograd.grad(loss, (kk, cc, hh, rr), allow_unused=True)
        outs.append([h] + [torch.zeros_like(t) if gr is None else gr for t, gr in zip((kk, cc, hh, rr), grads)])
    rtol, atol = TOL[dtype]
    for name, got, want in zip(("h", "dk", "dbias", "dh0", "dh_reset"), *outs):
        assert_close(got, want, rtol, atol, f"{name} {kind}")


def test_output_gradient_read_through_strides():
    """The backward kernel reads dL/dh through its strides: the expanded gradient of h.sum() (all strides 0,
    not copied to (B, T, H)) and a non-contiguous slice (from torch.cat) give the reference gradients."""
    unit_stride_rows = native._unit_rows
    ones = torch.ones(()).expand(4, 5, 6)
    rows = unit_stride_rows(ones)
    assert rows.stride() == (0, 0, 1) and torch.equal(rows, ones)
    cont = torch.randn(4, 5, 6)
    assert unit_stride_rows(cont).data_ptr() == cont.data_ptr()
    tr = torch.randn(4, 6, 5).transpose(1, 2)
    assert unit_stride_rows(tr).stride(2) == 1 and torch.equal(unit_stride_rows(tr), tr)
    k, h0, w = inputs("minlstm", 3, 40, 9, seed=14)
    w2 = torch.randn(3, 40, 18, dtype=torch.float64, generator=torch.Generator().manual_seed(15))
    for loss_fn in (lambda h: h.sum(), lambda h: (torch.cat([h, 2 * h], dim=-1) * w2).sum(),
                    lambda h: (h.transpose(0, 1).contiguous().transpose(0, 1) * w).sum()):
        got, want = [], []
        for impl, out in (("cpu", got), ("reference", want)):
            kk, hh = k.clone().requires_grad_(), h0.clone().requires_grad_()
            if impl == "cpu":
                h = fused_cell_scan("minlstm", kk, hh)
            else:
                h = cells.cell_scan("minlstm", kk, hh, candidate="g", normalize=True, backend="reference")
            out += [h, *torch.autograd.grad(loss_fn(h), (kk, hh))]
        for name, g_, w_ in zip(("h", "dk", "dh0"), got, want):
            assert_close(g_, w_, *TOL[torch.float64], name)


@pytest.fixture
def lin_chunk():
    """Set the in-kernel matmul route's chunk length (time steps) for one test; restored to automatic after."""
    yield native.library().minrnn_set_lin_chunk
    native.library().minrnn_set_lin_chunk(0)


# Where the layer's matmuls run (the `matmul` argument, a layer's cpu_matmul) and the chunk length of the in-kernel route: "off" is
# torch.mm around the kernels; "always" runs them in the kernels in fp64 too (plain C loops); 5 steps per chunk
# crosses 8 chunk boundaries at T = 37 and leaves 2-row strips of the 6-row register tile.
MATMUL = [("off", 0), ("auto", 0), ("auto", 5), ("always", 0), ("always", 5)]


@pytest.mark.parametrize("matmul,chunk", MATMUL)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell,normalize,candidate", VARIANTS)
def test_fused_linear_matches_reference(cell, normalize, candidate, dtype, bias, matmul, chunk, lin_chunk):
    """The layer route k = x W^T (+ bias in the kernel), its matmuls by torch.mm or inside the kernels: states and
    gradients w.r.t. x, W, bias and h0 equal F.linear + the reference scan in fp64. D = 7 and G = 26 or 39 leave
    partial 16-column panels in every in-kernel product."""
    lin_chunk(chunk)
    B, T, D, H = 2, 37, 7, 13
    g = torch.Generator().manual_seed(16)
    x = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    W = torch.randn(NG[cell] * H, D, generator=g, dtype=torch.float64) / 2
    c = torch.randn(NG[cell] * H, generator=g, dtype=torch.float64) if bias else None
    h0 = torch.randn(B, H, generator=g, dtype=torch.float64)
    w = torch.randn(B, T, H, generator=g, dtype=torch.float64)
    outs = []
    for impl, dt in (("fused", dtype), ("reference", torch.float64)):
        leaves = [t.to(dt).requires_grad_() for t in (x, W, h0) + ((c,) if bias else ())]
        xx, WW, hh, cc = leaves + ([] if bias else [None])
        if impl == "fused":
            h = fused_linear_cell_scan(cell, xx, WW, cc, hh, candidate=candidate, normalize=normalize, matmul=matmul)
        else:
            h = cells.cell_scan(cell, torch.nn.functional.linear(xx, WW, cc), hh, candidate=candidate,
                                normalize=normalize, backend="reference")
        outs.append([h, *torch.autograd.grad((h * w.to(dt)).sum() + h[:, -1].sum(), leaves)])
    rtol, atol = TOL[dtype]
    for name, got, want in zip(("h", "dx", "dW", "dh0", "dbias"), *outs):
        assert_close(got, want, rtol, atol, name)


def _lin_case(cell, B, T, D, H, seed, masked=False):
    g = torch.Generator().manual_seed(seed)
    t = dict(x=torch.randn(B, T, D, generator=g, dtype=torch.float64),
             W=torch.randn(NG[cell] * H, D, generator=g, dtype=torch.float64) / D ** 0.5,
             c=torch.randn(NG[cell] * H, generator=g, dtype=torch.float64),
             h0=torch.randn(B, H, generator=g, dtype=torch.float64),
             hr=torch.randn(B, H, generator=g, dtype=torch.float64),
             w=torch.randn(B, T, H, generator=g, dtype=torch.float64))
    mask = torch.rand(B, T, generator=g) > 0.2 if masked else None
    reset = torch.rand(B, T, generator=g) > 0.9 if masked else None
    return t, mask, reset


def _lin_run(cell, t, mask, reset, dtype, matmul, grads=("x", "W", "c", "h0", "hr")):
    """States and the gradients `grads` of sum(w * h) through the layer route with its matmuls at `matmul`."""
    leaves = {n: v.detach().to(dtype).requires_grad_(n in grads) for n, v in t.items() if n != "w"}
    h = fused_linear_cell_scan(cell, leaves["x"], leaves["W"], leaves["c"], leaves["h0"], mask=mask, reset=reset,
                               h_reset=leaves["hr"], matmul=matmul)
    return [h, *torch.autograd.grad((h * t["w"].to(dtype)).sum(), [leaves[n] for n in grads])]


@pytest.mark.parametrize("chunk", [0, 7])
@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_kernel_matmul_masks_resets_and_chunks(cell, chunk, lin_chunk):
    """In-kernel matmuls with padding masks and state resets crossing chunk boundaries (7 steps per chunk, T = 45):
    fp64 equals the torch.mm route to rounding, fp32 equals fp64 within fp32 tolerance, every gradient."""
    lin_chunk(chunk)
    t, mask, reset = _lin_case(cell, 3, 45, 19, 21, seed=40, masked=True)
    want = _lin_run(cell, t, mask, reset, torch.float64, "off")
    for dtype, matmul in ((torch.float64, "always"), (torch.float32, "auto")):
        got = _lin_run(cell, t, mask, reset, dtype, matmul)
        for name, g_, w_ in zip(("h", "dx", "dW", "dbias", "dh0", "dhr"), got, want):
            assert_close(g_.double(), w_, *TOL[dtype], f"{dtype} {name}")


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_kernel_matmul_with_two_threads_and_partial_grads(cell):
    """Large enough for two threads (each accumulates its own dL/dW slot, summed after): 5 rows over 2 threads,
    H = 130 (a partial panel), against fp64; and with x or W not needing a gradient, the others unchanged."""
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        t, _, _ = _lin_case(cell, 5, 110, 24, 130, seed=41)
        assert 5 * 110 * 130 >= 1 << 16  # native._threads uses every thread from this size up
        want = _lin_run(cell, t, None, None, torch.float64, "off")
        got = _lin_run(cell, t, None, None, torch.float32, "auto")
        for name, g_, w_ in zip(("h", "dx", "dW", "dbias", "dh0", "dhr"), got, want):
            assert_close(g_.double(), w_, *TOL[torch.float32], name)
        for grads in (("W", "c"), ("x", "h0")):
            part = _lin_run(cell, t, None, None, torch.float32, "auto", grads=grads)
            full = dict(zip(("x", "W", "c", "h0", "hr"), got[1:]))
            for n, g_ in zip(grads, part[1:]):
                assert torch.equal(g_, full[n]), n
    finally:
        torch.set_num_threads(old)


def test_kernel_matmul_declines_split_rows_and_falls_back():
    """Fewer rows than threads: the in-kernel route would split rows across jobs, so the C entry point declines
    (returns 1, writing nothing) and the layer uses torch.mm around the kernels, with the same results."""
    lib, p = native.library(), native._p
    x, W = torch.randn(1, 600, 8), torch.randn(2 * 128, 8)
    k, h = torch.full((1, 600, 256), 7.0), torch.full((1, 600, 128), 7.0)
    rc = lib.fused_lin_fwd_f32(0, 0, 1, p(x), p(W), p(k), None, None, p(h), None, None, None, 1, 600, 128, 8, 2)
    assert rc == 1 and bool((k == 7).all()) and bool((h == 7).all())
    assert lib.fused_lin_fwd_f32(0, 0, 1, p(x), p(W), p(k), None, None, p(h), None, None, None, 1, 600, 128, 8,
                                 1) == 0
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        t, _, _ = _lin_case("mingru", 1, 600, 8, 128, seed=42)
        want = _lin_run("mingru", t, None, None, torch.float64, "off")
        got = _lin_run("mingru", t, None, None, torch.float32, "auto")
    finally:
        torch.set_num_threads(old)
    for name, g_, w_ in zip(("h", "dx", "dW", "dbias", "dh0", "dhr"), got, want):
        assert_close(g_.double(), w_, *TOL[torch.float32], name)


def test_kernel_matmul_mode_errors_and_report():
    """Unknown modes are errors; matmul_in_kernel says where a dtype's matmuls run; the choice is per layer."""
    with pytest.raises(ValueError, match="cpu_matmul: expected one of"):
        native.matmul_in_kernel("fast", torch.float32)
    with pytest.raises(ValueError, match="cpu_matmul: expected one of"):
        MinGRU(3, 4, cpu_matmul="fast")
    assert not native.matmul_in_kernel("off", torch.float32)
    assert native.matmul_in_kernel("always", torch.float64)
    assert not native.matmul_in_kernel("auto", torch.float64)
    assert native.matmul_in_kernel("auto", torch.float32) == bool(native.library().minrnn_gemm_simd())
    assert MinGRU(3, 4, cpu_matmul="off").cpu_matmul == "off" and MinGRU(3, 4).cpu_matmul == "auto"


def test_saved_tensors_survive_later_calls():
    """What a graph saved (k, h) is never overwritten by a later forward or backward: two graphs alive at once,
    retain_graph and a forward between two backwards give the same, exact gradients."""
    torch.manual_seed(9)
    m = MinLSTM(5, 7, scan_impl="cpu", dtype=torch.float64)
    x1, x2 = torch.randn(2, 9, 5, dtype=torch.float64), torch.randn(2, 9, 5, dtype=torch.float64)

    def grads(fn):
        m.zero_grad()
        fn()
        return [p.grad.clone() for p in m.parameters()]

    want = grads(lambda: (m(x1)[0].square().sum() + m(x2)[0].sum()).backward())  # two graphs alive at once
    for _ in range(2):  # the pool now holds free buffers of this size: reused, same results
        assert all(torch.equal(a, b) for a, b in zip(grads(lambda: (m(x1)[0].square().sum()
                                                                    + m(x2)[0].sum()).backward()), want))
    y1, y2 = m(x1)[0], m(x2)[0]  # y1's graph is retained: its k must survive y2's and a later forward
    loss = y1.square().sum()
    loss.backward(retain_graph=True)
    m(x2)
    m.zero_grad()
    loss.backward()
    y2.sum().backward()
    assert all(torch.allclose(p.grad, w, rtol=0, atol=1e-12) for p, w in zip(m.parameters(), want))
