"""The fused Triton kernels against the fp64 sequential reference: states, dk, dh0 and d h_reset, masks and
resets, T not a power of two, single-pass and chunked launches, fp32/fp64/bf16/fp16 inputs, the layers and
the dispatcher. On a machine without CUDA the kernels run under Triton's CPU interpreter (small shapes);
with CUDA they run compiled on the GPU, plus one large shape."""
from __future__ import annotations

import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the kernels' @triton.jit decoration
triton = pytest.importorskip("triton", reason="triton is not installed (pip install triton); kernels untested")
if not CUDA and tuple(int(v) for v in triton.__version__.split(".")[:2]) < (3, 9):
    # triton 3.6's interpreter calls int() on 1-element arrays, which numpy >= 2.4 refuses
    pytest.skip(f"the CPU interpreter of triton {triton.__version__} fails with numpy 2.4; needs triton >= 3.9",
                allow_module_level=True)

from minrnn import MinGRU, MinLSTM  # noqa: E402
from minrnn.scan import linear_scan, select_backend  # noqa: E402
from minrnn.scan import triton_scan  # noqa: E402
from minrnn.scan.cells import cell_scan  # noqa: E402
from minrnn.scan.reference import scan_reference  # noqa: E402

from conftest import assert_close  # noqa: E402

DEV = torch.device("cuda" if CUDA else "cpu")
# (rtol, atol) against the fp64 reference computed from the same (rounded) inputs. Low-precision rows are
# dominated by storing h and the gradients in that dtype (8 resp. 11 mantissa bits); arithmetic is fp32.
TOL = {torch.float64: (1e-10, 1e-12), torch.float32: (2e-5, 2e-5),
       torch.bfloat16: (2e-2, 2e-2), torch.float16: (4e-3, 4e-3)}
CELLS = [("mingru", "g", False), ("mingru", "identity", False), ("minlstm", "g", True),
         ("minlstm", "identity", False)]
N_GATES = {"mingru": 2, "minlstm": 3}


def make(cell, B, T, H, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    k = (torch.randn(B, T, N_GATES[cell] * H, generator=g, dtype=torch.float64) * 2).to(dtype).double()
    h0 = torch.randn(B, H, generator=g, dtype=torch.float64).to(dtype).double()
    w = torch.randn(B, T, H, generator=g, dtype=torch.float64)  # loss = sum(w * h) + sum(h_n)
    return k, h0, w


def run(impl, cell, cand, norm, k, h0, w, dtype, device, extra=None, **cfg):
    """States and gradients (h, dk, dh0[, d extra]) of the loss, computed by `impl` in `dtype`."""
    extra = extra or {}
    k = k.to(device, dtype).requires_grad_()
    h0 = None if h0 is None else h0.to(device, dtype).requires_grad_()
    ex = {n: (v.to(device) if v.dtype == torch.bool else v.to(device, dtype).requires_grad_())
          for n, v in extra.items()}
    leaves = [k] + ([h0] if h0 is not None else []) + ([ex["h_reset"]] if "h_reset" in ex else [])
    if "h_reset" in ex:
        ex["h_reset"] = ex["h_reset"].expand(k.shape[0], -1)  # stride 0 in batch, as a learned h0 is
    if impl == "triton":
        h = triton_scan.cell_scan_triton(cell, k, h0, candidate=cand, normalize=norm, **ex, **cfg)
    else:
        h = cell_scan(cell, k, h0, candidate=cand, normalize=norm, backend=impl, **ex)
    assert h.dtype == dtype and h.shape == (k.shape[0], k.shape[1], w.shape[-1])
    loss = (h.double() * w.to(device)).sum() + h[:, -1].double().sum()
    grads = torch.autograd.grad(loss, leaves)
    return [h.detach().cpu()] + [gr.cpu() for gr in grads]


def check(cell, cand, norm, B, T, H, seed, dtype=torch.float32, with_h0=True, extra=None, **cfg):
    k, h0, w = make(cell, B, T, H, seed, dtype)
    h0 = h0 if with_h0 else None
    ref = run("reference", cell, cand, norm, k, h0, w, torch.float64, torch.device("cpu"), extra)
    got = run("triton", cell, cand, norm, k, h0, w, dtype, DEV, extra, **cfg)
    assert len(got) == len(ref)
    for name, g_, r_ in zip(["h", "dk", "dh0", "dh_reset"][:len(ref)], got, ref):
        assert_close(g_, r_, *TOL[dtype], f"{cell}/{cand}/{dtype}/T={T} {cfg}: {name}")


@pytest.mark.parametrize("cell,cand,norm,T,cfg", [
    CELLS[0] + (1, {}), CELLS[2] + (1, {}),  # one step
    *(c + (37, dict(block_t=8, n_chunks=3)) for c in CELLS),  # chunked, last chunk partial
    CELLS[1] + (100, dict(block_t=16, block_h=16)), CELLS[3] + (100, dict(block_t=16, block_h=16)),  # one pass
    CELLS[0] + (70, dict(block_t=8, n_chunks=4)), CELLS[2] + (70, dict(block_t=8, n_chunks=4))])
def test_values_and_gradients_match_reference(cell, cand, norm, T, cfg):
    check(cell, cand, norm, B=2, T=T, H=5, seed=T, **cfg)


@pytest.mark.parametrize("cell,cfg", [("mingru", {}), ("minlstm", dict(block_t=8, n_chunks=3))])
def test_mask_reset_and_h_reset(cell, cfg):
    B, T = 3, 19
    g = torch.Generator().manual_seed(7)
    mask = torch.rand(B, T, generator=g) > 0.3
    mask[:, 0] = False  # padding at t = 0 (dh0 passes through unchanged) ...
    mask[0, 12:] = False  # ... and a padded tail
    reset = torch.rand(B, T, generator=g) > 0.7
    reset[:, 0] = True
    h_reset = torch.randn(1, 6, generator=g, dtype=torch.float64)
    check(cell, "g", cell == "minlstm", B, T, 6, seed=3,
          extra=dict(mask=mask, reset=reset, h_reset=h_reset), **cfg)
    check(cell, "identity", False, B, T, 6, seed=4, with_h0=False, extra=dict(reset=reset), **cfg)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("cell,cand,norm", [CELLS[0], CELLS[2]])
def test_input_dtypes(dtype, cell, cand, norm):
    check(cell, cand, norm, B=2, T=45, H=6, seed=11, dtype=dtype, block_t=8, n_chunks=3)


def test_fp32_states_with_bf16_preactivations():
    """Under autocast the matmul gives bf16 k while h0 (a parameter) stays fp32: accepted, gradient in fp32."""
    k, h0, w = make("mingru", 2, 21, 5, seed=9, dtype=torch.bfloat16)
    reset = torch.zeros(2, 21, dtype=torch.bool)
    reset[:, 10] = True
    leaves = [k.clone().requires_grad_(), h0.clone().requires_grad_()]
    ref = cell_scan("mingru", leaves[0], leaves[1], candidate="g", normalize=False, backend="reference", reset=reset,
                    h_reset=leaves[1])
    ref_g = torch.autograd.grad((ref * w).sum(), leaves)
    x = [k.to(DEV, torch.bfloat16).requires_grad_(), h0.to(DEV, torch.float32).requires_grad_()]
    h = triton_scan.cell_scan_triton("mingru", x[0], x[1], candidate="g", normalize=False, reset=reset.to(DEV),
                                     h_reset=x[1], block_t=8, n_chunks=2)
    got_g = torch.autograd.grad((h.double() * w.to(DEV)).sum(), x)
    assert h.dtype == torch.bfloat16 and got_g[1].dtype == torch.float32
    for got, r, name in zip([h] + list(got_g), [ref] + list(ref_g), ("h", "dk", "dh0 (h0 and h_reset)")):
        assert_close(got.cpu(), r, *TOL[torch.bfloat16], name)


def test_strided_preactivations():
    """k a column slice of a wider tensor (last stride 1, not dense): values and dk still right."""
    k, _, w = make("minlstm", 2, 11, 4, seed=12)
    wide = torch.zeros(2, 11, 15, dtype=torch.float32, device=DEV)
    wide[:, :, 1:13] = k.float().to(DEV)
    wide.requires_grad_()
    h = triton_scan.cell_scan_triton("minlstm", wide[:, :, 1:13], None, candidate="g", normalize=True)
    (h.double() * w.to(DEV)).sum().backward()
    kr = k.clone().requires_grad_()
    ref = cell_scan("minlstm", kr, None, candidate="g", normalize=True, backend="reference")
    (ref * w).sum().backward()
    assert_close(h.cpu(), ref, *TOL[torch.float32], "h")
    assert_close(wide.grad[:, :, 1:13].cpu(), kr.grad, *TOL[torch.float32], "dk")
    assert float(wide.grad[:, :, [0, 13, 14]].abs().max()) == 0.0


@pytest.mark.parametrize("cfg", [{}, dict(block_t=8, n_chunks=4)])
def test_linear_scan_impl(cfg):
    g = torch.Generator().manual_seed(5)
    a = torch.rand(2, 50, 7, generator=g, dtype=torch.float64) * 0.98 + 0.01
    b, h0, w = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((2, 50, 7), (2, 7), (2, 50, 7)))
    leaves = [t.clone().requires_grad_() for t in (a, b, h0)]
    ref = scan_reference(*leaves)
    ref_g = torch.autograd.grad((ref * w).sum(), leaves)
    x = [t.to(DEV, torch.float32).requires_grad_() for t in (a, b, h0)]
    if cfg:
        h = triton_scan.scan_triton(*x, **cfg)
    else:
        h, _ = linear_scan(*x, impl="triton")
    got_g = torch.autograd.grad((h.double() * w.to(DEV)).sum(), x)
    assert_close(h.cpu(), ref, *TOL[torch.float32], "h")
    for got, r, name in zip(got_g, ref_g, ("da", "db", "dh0")):
        assert_close(got.cpu(), r, *TOL[torch.float32], name)


@pytest.mark.parametrize("cls,kw", [(MinGRU, {}), (MinLSTM, dict(candidate="identity"))])
def test_layer_with_triton_matches_reference(cls, kw):
    torch.manual_seed(0)
    ref = cls(4, 6, num_layers=2, bidirectional=True, learn_h0=True, scan_impl="reference", **kw).double()
    with torch.no_grad():
        ref.h0.normal_()
    tri = cls(4, 6, num_layers=2, bidirectional=True, learn_h0=True, scan_impl="triton", **kw).double().to(DEV)
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(2, 13, 4, dtype=torch.float64)
    lengths = torch.tensor([13, 9])
    reset = torch.zeros(2, 13, dtype=torch.bool)
    reset[1, 5] = True
    outs = []
    for layer, dev in ((ref, torch.device("cpu")), (tri, DEV)):
        y, h_n = layer(x.to(dev), lengths=lengths, reset=reset.to(dev))
        loss = y.pow(2).sum() + h_n.sum()
        outs.append([y, h_n] + list(torch.autograd.grad(loss, list(layer.parameters()))))
    for (r, t), name in zip(zip(*outs), ["y", "h_n"] + [n for n, _ in ref.named_parameters()]):
        assert_close(t.cpu(), r, *TOL[torch.float64], name)


def test_plan_covers_every_step():
    for B, T, H, cfg in [(1, 1, 3, {}), (2, 1000, 37, dict(n_chunks=7)), (4, 65, 128, dict(block_t=16, n_chunks=99))]:
        bt, bh, chunk, n = triton_scan.plan(B, T, H, torch.device("cpu"), **cfg)
        assert chunk % bt == 0 and (n - 1) * chunk < T <= n * chunk, (B, T, H, cfg, bt, chunk, n)
        assert bh >= 16 and bh & (bh - 1) == 0


def test_dispatch_and_errors(monkeypatch):
    assert select_backend("auto", torch.device("cpu")) != "triton"  # the interpreter is for tests only
    k = torch.randn(1, 4, 6, device=DEV)
    with pytest.raises(ValueError, match=r"expected \(B, T, 3 \* H\)"):
        triton_scan.cell_scan_triton("minlstm", torch.randn(1, 4, 5, device=DEV), None, candidate="g",
                                     normalize=True)
    with pytest.raises(ValueError, match="mask: expected a \\(1, 4\\) bool tensor"):
        triton_scan.cell_scan_triton("mingru", k, None, candidate="g", normalize=False,
                                     mask=torch.ones(1, 5, dtype=torch.bool, device=DEV))
    with pytest.raises(TypeError, match="expected dtype in"):
        triton_scan.cell_scan_triton("mingru", k.to(torch.int32), None, candidate="g", normalize=False)
    monkeypatch.setattr(triton_scan, "installed", lambda: False)
    with pytest.raises(RuntimeError, match="pip install triton"):
        select_backend("triton", DEV)
    with pytest.raises(RuntimeError, match="pip install triton"):
        MinGRU(3, 4, scan_impl="triton").to(DEV)(torch.randn(1, 2, 3, device=DEV))
    monkeypatch.setattr(triton_scan, "installed", lambda: True)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="need CUDA tensors"):
        select_backend("triton", torch.device("cpu"))


@pytest.mark.skipif(not CUDA, reason="large shapes need a GPU (the interpreter would take minutes)")
@pytest.mark.parametrize("cell,cand,norm", [CELLS[0], CELLS[2]])
def test_large_shapes_on_gpu(cell, cand, norm):
    check(cell, cand, norm, B=3, T=4099, H=300, seed=1)  # chunked: few programs for a long sequence
    check(cell, cand, norm, B=64, T=257, H=1000, seed=2, dtype=torch.bfloat16)


def test_kernels_compile_for_sm90_without_a_gpu():
    """Lower two variants to H100/H200 machine code with triton's bundled ptxas (what the interpreter skips)."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, str(root / "bench" / "triton_compile_check.py"), "--quick"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count(": ok REG:") == 2, res.stdout


@pytest.mark.parametrize("cell", ["mingru", "minlstm", "linear"])
def test_opcheck_triton_ops(cell):
    """The kernels as custom operators: schema, autograd registration, fake tensors, AOT dispatch (the
    interpreter on CPU in CI)."""
    g = torch.Generator().manual_seed(30)
    B, T, H = 2, 5, 3
    G = H * N_GATES.get(cell, 1)
    x = torch.randn(B, T, G, generator=g, dtype=torch.float64).to(DEV).requires_grad_()
    x_b = torch.randn(B, T, H, generator=g, dtype=torch.float64).to(DEV).requires_grad_() if cell == "linear" else None
    if cell == "linear":
        x = (torch.rand(B, T, H, generator=g, dtype=torch.float64) * 0.9).to(DEV).requires_grad_()
    h0 = torch.randn(B, H, generator=g, dtype=torch.float64).to(DEV).requires_grad_()
    mask = (torch.rand(B, T, generator=g) > 0.3).to(DEV).view(torch.uint8) if cell != "linear" else None
    args = (x, x_b, h0, None, mask, None, triton_scan.CELL_IDS[cell], cell == "minlstm", True, 0, 0, 0, 4, 2, 1)
    result = torch.library.opcheck(triton_scan.triton_scan_op, args)
    assert set(result.values()) == {"SUCCESS"}, result
    d = [t.detach() if isinstance(t, torch.Tensor) else t for t in args]
    h = triton_scan.triton_scan_op(*d)
    bwd = (d[0], d[1], h, d[2], d[3], d[4], d[5], torch.randn_like(h), *d[6:12], d[12], d[14])
    result = torch.library.opcheck(triton_scan.triton_scan_bwd_op, bwd)
    assert set(result.values()) == {"SUCCESS"}, result


def test_torch_compile_fullgraph_with_triton_layer():
    torch.manual_seed(31)
    m = MinGRU(4, 6, scan_impl="triton", dtype=torch.float64).to(DEV)
    x = torch.randn(2, 7, 4, dtype=torch.float64, device=DEV)
    outs = []
    for fn in (torch.compile(m, fullgraph=True), m):
        xx = x.clone().requires_grad_()
        y, h_n = fn(xx)
        outs.append([y, h_n, *torch.autograd.grad(y.square().sum() + h_n.sum(), [xx, *m.parameters()])])
    for a, b in zip(*outs):
        assert_close(a.cpu(), b.cpu(), 1e-10, 1e-12, "compiled vs eager (triton)")


def test_triton_double_backward_is_a_clear_error():
    m = MinGRU(4, 6, scan_impl="triton", dtype=torch.float64).to(DEV)
    x = torch.randn(2, 5, 4, dtype=torch.float64, device=DEV, requires_grad=True)
    (gx,) = torch.autograd.grad(m(x)[0].square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="not supported by the 'triton' backend.*'reference' or 'chunked'"):
        gx.sum().backward()


@pytest.mark.parametrize("shape", [(0, 5, 3), (2, 5, 0)])
def test_triton_empty_inputs(shape):
    a = torch.rand(*shape, device=DEV, requires_grad=True)
    h, h_n = linear_scan(a, a.detach() * 0 + 1, None, impl="triton")
    assert h.shape == shape and h_n.shape == (shape[0], shape[2])
    h.sum().backward()
    assert a.grad.shape == shape
    x = torch.zeros(shape[0], 5, 4, device=DEV, requires_grad=True)
    y, _ = MinGRU(4, 6, scan_impl="triton").to(DEV)(x)
    y.sum().backward()
    assert y.shape == (shape[0], 5, 6) and x.grad.shape == x.shape
