"""The core's contract, on every backend: empty inputs, double backward (exact or a clear error), padding that is
never read (also under a projection and with NaN there), resets on padded steps, per-layer choices that two
threads cannot flip for each other, custom operators (`opcheck`, `torch.compile(fullgraph=True)` = eager), the
build cache key, the one-time fallback warning, and clear errors for bad input."""
from __future__ import annotations

import threading
import warnings

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from minrnn import MinGRU, MinLSTM, ModelConfig, SequenceModel, linear_scan
from minrnn.scan import available_impls, build, cpu, dispatch, select_backend

from conftest import assert_close

CPU_BACKENDS = available_impls("cpu")  # reference, logspace, chunked (+ cpu where the kernels compiled)
LINEAR = [b for b in CPU_BACKENDS if b != "logspace"]  # the backends that take masks/resets
needs_cpu = pytest.mark.skipif(not cpu.available(), reason=f"cpu backend unavailable: {cpu.unavailable_reason()}")
F64 = torch.float64


def _layer(cls, backend, **kw):
    torch.manual_seed(0)
    return cls(4, None if "expansion" in kw else 6, scan_impl=backend, dtype=F64, **kw)


# ---- empty inputs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", [(0, 5, 3), (2, 5, 0)])
def test_linear_scan_empty_batch_or_width(backend, shape):
    a = torch.rand(*shape, dtype=F64, requires_grad=True)
    b = torch.rand(*shape, dtype=F64, requires_grad=True)
    h, h_n = linear_scan(a, b, None, backend)
    assert h.shape == shape and h_n.shape == (shape[0], shape[2])
    h.sum().backward()
    assert a.grad.shape == shape and b.grad.shape == shape and not a.grad.any() and not b.grad.any()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_layer_and_model_on_an_empty_batch(cls, backend):
    m = _layer(cls, backend, num_layers=2, proj_size=3)
    x = torch.randn(0, 5, 4, dtype=F64, requires_grad=True)
    y, h_n = m(x)
    assert y.shape == (0, 5, 3) and h_n.shape == (2, 0, 6)
    (y.sum() + h_n.sum()).backward()
    assert x.grad.shape == x.shape and all(p.grad is not None and not p.grad.any() for p in m.parameters())
    lm = SequenceModel(ModelConfig(cell=cls.cell, d_model=8, n_layers=2, vocab_size=7, scan_impl=backend))
    out, state = lm(torch.zeros(0, 4, dtype=torch.int64))
    assert out.shape == (0, 4, 7) and state[0][1].shape == (1, 0, 16)


@needs_cpu
def test_cpu_ops_on_empty_inputs_never_call_c():
    """The ops themselves (not only the dispatcher) return empty outputs: the C code divided by B before."""
    k = torch.zeros(0, 3, 8)
    assert cpu.cpu_cell(k, None, None, None, None, None, 0, False, True).shape == (0, 3, 4)
    h, kk = cpu.cpu_linear_cell(torch.zeros(0, 3, 5), torch.zeros(8, 5), None, None, None, None, None, 0, False,
                                True, "auto")
    assert h.shape == (0, 3, 4) and kk.shape == (0, 3, 8)
    assert cpu.cpu_scan(torch.zeros(2, 3, 0), torch.zeros(2, 3, 0), None).shape == (2, 3, 0)


# ---- double backward ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_double_backward_exact_or_a_clear_error(backend):
    """gradgradcheck passes on the pure-PyTorch backends; the compiled one raises, naming those that work."""
    torch.manual_seed(1)
    a = torch.rand(2, 6, 3, dtype=F64, requires_grad=True) * 0.8 + 0.1
    b = torch.rand(2, 6, 3, dtype=F64, requires_grad=True) + 0.1
    h0 = torch.rand(2, 3, dtype=F64, requires_grad=True) + 0.1
    layer = _layer(MinLSTM, backend, proj_size=3, learn_h0=backend != "logspace")
    x = torch.randn(2, 6, 4, dtype=F64, requires_grad=True)
    scan = (lambda a, b, h0: linear_scan(a, b, h0, backend)[0])
    if backend == "cpu":
        for fn, args in ((scan, (a, b, h0)), (lambda x: layer(x)[0], (x,))):
            with pytest.raises(RuntimeError, match="double backward .* not supported by the 'cpu' backend.*"
                                                   "'reference' or 'chunked'"):
                gradgradcheck(fn, args)
        return
    assert gradcheck(scan, (a, b, h0)) and gradgradcheck(scan, (a, b, h0))
    assert gradgradcheck(lambda x: layer(x)[0], (x,))


@pytest.mark.parametrize("backend", ["chunked", "reference"])
def test_gradient_penalty_matches_reference(backend):
    """d/dW of |dL/dx|^2 (create_graph=True), bias included, equals the reference backend."""
    out = {}
    for name in (backend, "reference"):
        m = _layer(MinGRU, name, num_layers=2)
        x = torch.randn(3, 9, 4, dtype=F64, generator=torch.Generator().manual_seed(2)).requires_grad_()
        y, _ = m(x)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        out[name] = torch.autograd.grad(gx.square().sum(), list(m.parameters()))
    for got, want in zip(out[backend], out["reference"]):
        assert got is not None
        assert_close(got, want, 1e-10, 1e-12, "penalty gradient")


@needs_cpu
def test_gradient_penalty_on_the_default_fp32_layer_names_the_backends_that_work():
    m = MinGRU(4, 6)
    x = torch.randn(2, 5, 4, requires_grad=True)
    (gx,) = torch.autograd.grad(m(x)[0].square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="use scan_impl='reference' or 'chunked'"):
        gx.square().sum().backward()


# ---- padding -----------------------------------------------------------------------------------------------

def _padded(seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 10, 4, dtype=F64, generator=g)
    lengths = torch.tensor([10, 6, 1])
    mask = torch.arange(10)[None] < lengths[:, None]
    return x, lengths, mask


@pytest.mark.parametrize("backend", LINEAR)
@pytest.mark.parametrize("kw", [dict(proj_size=3), dict(expansion=2.0), dict(num_layers=2, bidirectional=True)])
def test_padded_outputs_are_zero_after_the_projection(backend, kw):
    m = _layer(MinGRU, backend, **kw)
    x, lengths, mask = _padded()
    y, _ = m(x, lengths=lengths)
    assert torch.equal(y[~mask], torch.zeros_like(y[~mask]))
    assert y[mask].abs().min() > 0  # real positions are not zeroed


@pytest.mark.parametrize("backend", LINEAR)
@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_nan_in_padding_gives_the_clean_runs_gradients(cls, backend):
    """Padded input values are never read: NaN/inf there gives the same outputs and gradients, bit for bit, as
    any finite values, for the input, every weight and bias, and h0."""
    x, lengths, mask = _padded()
    results = []
    for fill in (0.5, float("nan"), float("inf")):
        m = _layer(cls, backend, num_layers=2, proj_size=3, learn_h0=True)
        xx = x.masked_fill(~mask[..., None], fill).requires_grad_()
        y, h_n = m(xx, lengths=lengths)
        grads = torch.autograd.grad(y.sum() + h_n.sum(), [xx, *m.parameters()])
        assert all(torch.isfinite(g).all() for g in grads)
        results.append([y, h_n, *grads])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


@pytest.mark.parametrize("backend", LINEAR)
def test_a_reset_on_a_padded_step_does_nothing(backend):
    """Padding wins: the state is carried through a padded step, whether or not a reset is marked there."""
    m = _layer(MinGRU, backend, learn_h0=True)
    with torch.no_grad():
        m.h0.normal_()
    x, lengths, mask = _padded()
    reset = torch.zeros(3, 10, dtype=torch.bool)
    reset[1, 7] = reset[2, 3] = True  # both on padding
    a = m(x, lengths=lengths)
    b = m(x, lengths=lengths, reset=reset)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ---- per-layer choices, threads -----------------------------------------------------------------------------

@needs_cpu
def test_two_threads_with_different_choices_give_serial_results():
    """Choices live on the layers (scan_impl, cpu_matmul): threads that use different ones at the same time get
    exactly what each gets alone."""
    torch.manual_seed(4)
    layers = [MinLSTM(16, 32, cpu_matmul="off"), MinLSTM(16, 32, cpu_matmul="always"),
              MinLSTM(16, 32, scan_impl="chunked")]
    for m in layers[1:]:
        m.load_state_dict(layers[0].state_dict())
    x = torch.randn(4, 50, 16)

    def run(m):
        y, _ = m(x)
        return [y.detach(), *torch.autograd.grad(y.square().sum(), list(m.parameters()))]
    serial = [run(m) for m in layers]
    got, errors = {}, []

    def worker(i):
        try:
            for _ in range(20):
                got[i] = run(layers[i])
                assert all(torch.equal(a, b) for a, b in zip(got[i], serial[i]))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in (1, 2):
        for a, b in zip(serial[i], serial[0]):
            assert_close(a, b, 2e-5, 2e-5, "the routes agree")


# ---- custom operators ----------------------------------------------------------------------------------------

@needs_cpu
@pytest.mark.parametrize("cell_id,n_gates", [(0, 2), (1, 3)])
def test_opcheck_every_cpu_op(cell_id, n_gates):
    g = torch.Generator().manual_seed(5)

    def r(*s, grad=True):
        return torch.randn(*s, dtype=F64, generator=g).requires_grad_(grad)
    B, T, D, H = 2, 5, 3, 4
    a = (torch.rand(B, T, H, dtype=F64, generator=g) * 0.9).requires_grad_()
    b, h0, hr = r(B, T, H), r(B, H), r(B, H)
    mask, reset = torch.rand(B, T, generator=g) > 0.3, torch.rand(B, T, generator=g) > 0.7
    k, bias, x, W = r(B, T, n_gates * H), r(n_gates * H), r(B, T, D), r(n_gates * H, D)
    cases = [(cpu.cpu_scan, (a, b, h0)), (cpu.cpu_scan, (a, b, None)),
             (cpu.cpu_cell, (k, bias, h0, hr, mask, reset, cell_id, True, True)),
             (cpu.cpu_cell, (k, None, None, None, None, None, cell_id, False, False))]
    cases += [(cpu.cpu_linear_cell, (x, W, bias, h0, hr, mask, reset, cell_id, True, True, mm))
              for mm in ("auto", "off", "always")]
    x32, W32 = x.detach().float().requires_grad_(), W.detach().float().requires_grad_()
    cases.append((cpu.cpu_linear_cell, (x32, W32, None, None, None, None, None, cell_id, False, False, "auto")))
    d = [t.detach() for t in (a, b, h0, k, bias, hr, x, W)]
    h = cpu.cpu_scan(d[0], d[1], d[2])
    hc = cpu.cpu_cell(d[3], d[4], d[2], d[5], mask, reset, cell_id, True, True)
    hl, kl = cpu.cpu_linear_cell(d[6], d[7], d[4], d[2], d[5], mask, reset, cell_id, True, True, "auto")
    cases += [(cpu.cpu_scan_bwd, (d[0], h, d[2], torch.randn_like(h), True, True)),
              (cpu.cpu_cell_bwd, (d[3], d[4], hc, d[2], d[5], mask, reset, torch.randn_like(hc), cell_id, True,
                                  True, True, True, True)),
              (cpu.cpu_linear_cell_bwd, (d[6], d[7], kl, d[4], hl, d[2], d[5], mask, reset, torch.randn_like(hl),
                                         cell_id, True, True, "auto", True, True, True, True, True))]
    for op, args in cases:
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, (op, result)


@needs_cpu
@pytest.mark.slow
def test_torch_compile_fullgraph_equals_eager():
    """torch.compile(fullgraph=True) traces through the custom ops (no graph break, or it raises): values and
    gradients equal eager for MinGRU, MinLSTM (2 layers, bidirectional, padding) and SequenceModel."""
    torch.manual_seed(6)
    x = torch.randn(3, 11, 6)
    lengths = torch.tensor([11, 8, 3])
    for m, call in ((MinGRU(6, 8, num_layers=2), lambda m, x: m(x)),
                    (MinLSTM(6, 8, bidirectional=True, proj_size=5), lambda m, x: m(x, lengths=lengths))):
        outs = []
        for fn in (torch.compile(m, fullgraph=True), m):
            xx = x.clone().requires_grad_()
            y, h_n = call(fn, xx)
            grads = torch.autograd.grad(y.square().sum() + h_n.sum(), [xx, *m.parameters()])
            outs.append([y, h_n, *grads])
        for a, b in zip(*outs):
            assert_close(a, b, 1e-5, 1e-6, "compiled vs eager")
    lm = SequenceModel(ModelConfig(cell="minlstm", d_model=16, n_layers=2, vocab_size=11))
    tok = torch.randint(0, 11, (2, 9))
    outs = []
    for fn in (torch.compile(lm, fullgraph=True), lm):
        out, _ = fn(tok)
        outs.append([out, *torch.autograd.grad(out.logsumexp(-1).sum(), list(lm.parameters()))])
    for a, b in zip(*outs):
        assert_close(a, b, 1e-5, 1e-6, "compiled vs eager (SequenceModel)")


# ---- build and dispatch ----------------------------------------------------------------------------------

def test_cache_key_covers_cpu_compiler_and_flags(monkeypatch):
    src = b"int f(void) { return 1; }"
    base = build.cache_key(src, "gcc", ["-O2"])
    assert build.cache_key(src, "gcc", ["-O2"]) == base
    assert build.cache_key(src, "gcc", ["-O3"]) != base
    assert build.cache_key(src + b" ", "gcc", ["-O2"]) != base
    monkeypatch.setattr(build, "cpu_identity", lambda: "x86_64|Other CPU|avx2 fma")
    other_cpu = build.cache_key(src, "gcc", ["-O2"])
    monkeypatch.setattr(build, "cpu_identity", lambda: "x86_64|Other CPU|avx2 avx512f fma")
    assert len({base, other_cpu, build.cache_key(src, "gcc", ["-O2"])}) == 3  # model and ISA flags count
    monkeypatch.setattr(build, "compiler_version", lambda cc: "gcc (GCC) 99.1")
    assert build.cache_key(src, "gcc", ["-O2"]) not in (base, other_cpu)


@pytest.mark.skipif(build.shutil.which("gcc") is None and build.shutil.which("cc") is None, reason="no compiler")
def test_build_without_openmp_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("MINRNN_CACHE", str(tmp_path))
    src = tmp_path / "t.c"
    src.write_text("#ifdef _OPENMP\nint omp(void) { return 1; }\n#else\nint omp(void) { return 0; }\n#endif\n")
    monkeypatch.setattr(build, "OPENMP", ["-fopenmp", "-fno-such-option-minrnn"])  # as a compiler without OpenMP
    path, with_omp = build.compile_with_openmp_fallback("t", [src])
    import ctypes
    assert not with_omp and ctypes.CDLL(str(path)).omp() == 0


def test_unavailable_kernels_warn_once_and_chunked_runs(monkeypatch):
    monkeypatch.setattr(cpu, "_state", {"lib": None, "error": "compiling minrnn_scan failed (test)"})
    monkeypatch.setattr(build, "_warned", set())
    with pytest.warns(RuntimeWarning, match=r"compiled CPU kernels unavailable \(compiling minrnn_scan failed "
                                            r"\(test\)\); the pure-PyTorch 'chunked' scan runs instead"):
        assert select_backend("auto", "cpu", torch.float32) == "chunked"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_backend("auto", "cpu", torch.float32) == "chunked"  # once only
    with pytest.raises(RuntimeError, match="scan_impl 'cpu' is unavailable: compiling minrnn_scan failed"):
        select_backend("cpu", "cpu", torch.float32)


def test_dispatcher_names():
    assert dispatch.check_name("native") == "cpu"  # the old name still means the compiled kernels
    assert select_backend("chunked", "cpu", torch.float32) == "chunked"
    assert select_backend("cpu", "cpu", torch.float32, empty=True) == "reference"
    with pytest.raises(ValueError, match="scan_impl: expected one of"):
        select_backend("fast", "cpu")
    with pytest.raises(ValueError, match="scan_impl: expected one of"):
        MinGRU(3, 4, scan_impl="fast")


# ---- bad input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make,err,msg", [
    (lambda: MinGRU(True, 4), ValueError, "input_size: expected a positive int, got True"),
    (lambda: MinGRU(4, 6, num_layers=True), ValueError, "num_layers: expected a positive int, got True"),
    (lambda: MinGRU(4, 6, dtype=torch.int64), TypeError, "dtype: expected a floating-point torch.dtype"),
    (lambda: MinGRU(4, expansion=float("nan")), ValueError, "expansion: expected a finite number > 0"),
    (lambda: MinGRU(4, 6, dropout=True), ValueError, "dropout: expected a value in"),
])
def test_bad_constructor_arguments(make, err, msg):
    with pytest.raises(err, match=msg):
        make()


def test_bad_call_arguments():
    m = MinGRU(4, 6, dtype=F64)
    x = torch.randn(2, 5, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"lengths: expected an integer tensor of shape \(2,\), got torch.bool"):
        m(x, lengths=torch.tensor([True, True]))
    with pytest.raises(TypeError, match="lengths: expected a tensor on cpu"):
        m(x, lengths=torch.tensor([5, 3], device="meta"))
    with pytest.raises(TypeError, match="x: expected a floating-point tensor, got dtype torch.int64"):
        m(torch.zeros(2, 5, 4, dtype=torch.int64))
    with pytest.warns(UserWarning, match="dropout=0.5 has no effect with num_layers=1"):
        MinGRU(4, 6, dropout=0.5)
    lm = SequenceModel(ModelConfig(d_model=8, n_layers=2, vocab_size=7))
    with pytest.raises(ValueError, match=r"tokens: expected ids in \[0, 7\), got values in \[0, 9\]"):
        lm(torch.tensor([[0, 9]]))
    with pytest.raises(ValueError, match=r"tokens: expected ids in \[0, 7\), got values in \[-1, 3\]"):
        lm.step(torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match="x: expected at least one time step"):
        lm(torch.zeros(2, 0, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"state: expected a list of 2 \(window, h\) pairs, got list of 1"):
        lm(torch.zeros(2, 3, dtype=torch.int64), lm.init_state(2)[:1])
    with pytest.raises(ValueError, match=r"state\[0\]: expected \(window \(3, 3, 8\), h \(1, 3, 16\)\) for batch 3"):
        lm(torch.zeros(3, 3, dtype=torch.int64), lm.init_state(2))


def test_learned_h0_on_the_logspace_scan_starts_positive():
    m = MinGRU(4, 6, learn_h0=True, scan_impl="logspace", dtype=F64)
    assert torch.equal(m.h0, torch.full_like(m.h0, 0.5))  # g(0): the first forward works (it failed at 0)
    x = torch.randn(2, 5, 4, dtype=F64)
    ref = MinGRU(4, 6, learn_h0=True, scan_impl="reference", dtype=F64)
    ref.load_state_dict(m.state_dict())
    assert_close(m(x)[0], ref(x)[0], 1e-9, 1e-11, "logspace with the learned h0")


def test_old_checkpoints_with_cells_keys_load():
    m = MinLSTM(4, 6, num_layers=2, bidirectional=True)
    old = {k.replace("weight_ih_l0_reverse", "cells.1.weight").replace("bias_ih_l0_reverse", "cells.1.bias")
           .replace("weight_ih_l0", "cells.0.weight").replace("bias_ih_l0", "cells.0.bias")
           .replace("weight_ih_l1_reverse", "cells.3.weight").replace("bias_ih_l1_reverse", "cells.3.bias")
           .replace("weight_ih_l1", "cells.2.weight").replace("bias_ih_l1", "cells.2.bias"): v
           for k, v in m.state_dict().items()}
    assert "cells.3.weight" in old
    fresh = MinLSTM(4, 6, num_layers=2, bidirectional=True)
    fresh.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), m.state_dict().values()))


@needs_cpu
def test_the_kernels_built_without_openmp_are_correct(tmp_path, monkeypatch):
    """As on a compiler without OpenMP (Apple clang): the real kernels build without it, run on one thread and
    give the reference's values and gradients, even when two threads are asked for."""
    monkeypatch.setenv("MINRNN_CACHE", str(tmp_path))
    monkeypatch.setattr(build, "OPENMP", ["-fopenmp", "-fno-such-option-minrnn"])
    monkeypatch.setattr(cpu, "_state", {})  # forget the loaded library; restored after the test
    assert cpu.available() and not cpu.openmp()
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        outs = []
        for backend in ("cpu", "reference"):
            torch.manual_seed(8)
            m = MinLSTM(8, 130, scan_impl=backend)
            x = torch.randn(3, 200, 8, generator=torch.Generator().manual_seed(7), requires_grad=True)
            y, h_n = m(x, lengths=torch.tensor([200, 150, 9]))
            outs.append([y, h_n, *torch.autograd.grad(y.square().sum(), [x, *m.parameters()])])
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*outs):
        assert_close(a, b, 2e-5, 2e-5, "no-OpenMP build vs reference")

