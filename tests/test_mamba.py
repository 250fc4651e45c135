"""Mamba (`minrnn.models.mamba`, from the mambapy package): the wrapper against the package's own modules and
an fp64 twin written from the equations, step == forward, generation, the missing-extra error, the
param-matched presets, and a few training steps of every task with --model mamba.

Tolerances: fp64 comparisons of the same arithmetic in another order (parallel vs sequential scan, step vs
forward) agree to ~1e-15 relative on O(1) outputs, so 1e-10 leaves room and still catches any wrong term;
fp32 comparisons of the same ops in the same order are exact (0)."""
from __future__ import annotations

import json
import sys

import pytest
import torch

mambapy = pytest.importorskip("mambapy.mamba", reason="mambapy not installed (pip install 'minrnn[mamba]')")

from minrnn.cli import main  # noqa: E402
from minrnn.extras import MissingExtra  # noqa: E402
from minrnn.models.arch import ArchConfig  # noqa: E402
from minrnn.models.baselines import count_params, make_model  # noqa: E402
from minrnn.models.generate import generate  # noqa: E402
from minrnn.models.mamba import NO_STATE, MambaLM, selective_scan_reference  # noqa: E402

HINT = "pip install 'minrnn[mamba]'"


def _model(**kw) -> MambaLM:
    torch.manual_seed(0)
    args = dict(d_model=16, n_layers=2, d_state=4, d_conv=4, mlp_ratio=1.5, vocab_size=11)
    args.update(kw)
    m = MambaLM(**args).double()
    with torch.no_grad():  # non-trivial A, D and dt so that every term of the recurrence matters
        for layer in m.layers:
            layer.mixer.A_log.uniform_(-1.0, 1.0)
            layer.mixer.D.normal_()
    return m


def test_forward_is_the_package_stack_on_the_same_weights():
    """Our model with no MLP = embedding -> mambapy's own `Mamba` stack (same weights) -> its RMSNorm -> head."""
    m = _model(mlp_ratio=0.0)
    stack = mambapy.Mamba(m.config).double()
    stack.layers.load_state_dict(m.layers.state_dict())
    x = torch.randint(0, 11, (3, 13))
    with torch.no_grad():
        ours, state = m(x)
        theirs = m.head(m.norm(stack(m.embed(x))))
    assert state is NO_STATE
    assert torch.equal(ours, theirs)  # the same modules called in the same order: bit-identical


def test_mixer_equals_an_fp64_sequential_twin_from_the_equations():
    m = _model()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    for layer in m.layers:
        with torch.no_grad():
            got = layer.mixer(x)
        want = selective_scan_reference(layer.mixer, x)
        assert (got - want).abs().max() < 1e-10 * want.abs().max()


def test_parallel_scan_equals_the_package_sequential_scan_values_and_gradients():
    outs = {}
    for scan in ("pscan", "sequential"):
        m = _model(mamba_scan=scan)
        x = torch.randint(0, 11, (2, 7))
        y, _ = m(x)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        outs[scan] = (y.detach(), [p.grad.clone() for p in m.parameters()])
    (y1, g1), (y2, g2) = outs["pscan"], outs["sequential"]
    assert (y1 - y2).abs().max() < 1e-10
    for a, b in zip(g1, g2):
        assert (a - b).abs().max() < 1e-10 * max(1.0, b.abs().max().item())


def test_double_backward_sequential_passes_gradgradcheck_and_pscan_raises():
    torch.manual_seed(0)
    m = MambaLM(d_model=4, n_layers=1, d_state=2, input_dim=2, output_dim=1, mamba_scan="sequential").double()
    x = torch.randn(1, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v: m(v)[0], (x,))
    p = MambaLM(d_model=4, n_layers=1, d_state=2, input_dim=2, output_dim=1, mamba_scan="pscan").double()
    p.load_state_dict(m.state_dict())
    g, = torch.autograd.grad(p(x)[0].pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):  # mambapy's PScan backward works in place: an error, not a wrong number
        torch.autograd.grad(g.pow(2).sum(), x)


def test_step_by_step_equals_the_parallel_forward_and_states_carry():
    m = _model()
    x = torch.randint(0, 11, (3, 10))
    with torch.no_grad():
        full, _ = m(x)
        state, steps = m.init_state(3), []
        for t in range(10):
            o, state = m.step(x[:, t], state)
            steps.append(o)
        a, s = m(x[:, :4], m.init_state(3))
        b, s2 = m(x[:, 4:], s)
    assert (torch.stack(steps, 1) - full).abs().max() < 1e-10
    assert (torch.cat([a, b], 1) - full).abs().max() < 1e-10
    for (h1, c1), (h2, c2) in zip(state, s2):  # the state after 10 steps, two ways
        assert torch.equal(h1, h2) and torch.equal(c1, c2)
    assert state[0][0].abs().sum() > 0  # the state holds something


def test_vector_inputs_and_fp32():
    torch.manual_seed(0)
    m = MambaLM(d_model=16, n_layers=2, input_dim=5, output_dim=3)
    x = torch.randn(2, 6, 5)
    with torch.no_grad():
        full, _ = m(x)
        stepped, _ = m(x, m.init_state(2))
    assert full.shape == (2, 6, 3) and full.dtype == torch.float32
    assert (full - stepped).abs().max() < 1e-5  # fp32: parallel vs sequential summation order


def test_greedy_generation_equals_argmax_of_the_full_forward():
    m = _model().float()
    prompt = torch.randint(0, 11, (2, 5))
    new, timing = generate(m, prompt, 8, temperature=0.0)
    seq = torch.cat([prompt, new], 1)
    with torch.no_grad():
        logits, _ = m(seq[:, :-1])
    assert torch.equal(logits[:, prompt.shape[1] - 1:].argmax(-1), new)
    assert timing["step"].startswith("PyTorch step")


def test_no_state_is_refused_and_bad_states_and_inputs_are_clear_errors():
    m = _model()
    x = torch.randint(0, 11, (2, 4))
    _, s = m(x)
    with pytest.raises(ValueError, match="keeps no state"):
        m.step(x[:, 0], s)
    with pytest.raises(ValueError, match=r"state\[0\]: expected \(h \(2, 32, 4\)"):
        m.step(x[:, 0], m.init_state(3))
    with pytest.raises(ValueError, match=r"tokens: expected ids in \[0, 11\)"):
        m(x + 20)
    with pytest.raises(ValueError, match="at least one time step"):
        m(x[:, :0])
    with pytest.raises(ValueError, match="mamba_scan"):
        MambaLM(vocab_size=5, mamba_scan="fast")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="mamba_scan='mamba-ssm'"):
            MambaLM(d_model=8, n_layers=1, vocab_size=5, mamba_scan="mamba-ssm")(x % 5)


def test_empty_batch():
    m = _model()
    out, _ = m(torch.zeros(0, 5, dtype=torch.long))
    assert out.shape == (0, 5, 11)


def test_missing_extra_is_one_line_with_the_install_hint(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "mambapy", None)
    monkeypatch.setitem(sys.modules, "mambapy.mamba", None)
    with pytest.raises(MissingExtra, match=HINT.replace("[", r"\[").replace("]", r"\]")):
        ArchConfig(model="mamba")
    capsys.readouterr()
    rc = main(["train", "selective-copy", "--model", "mamba", "--steps", "1", "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("minrnn train: error: ") and HINT in err[0], err
    assert not any(tmp_path.iterdir())  # refused before a run folder was made


def _params(task: str, preset: str, model: str) -> int:
    from minrnn.tasks import get_task
    T = get_task(task)
    kw = {k: v for k, v in T.preset(preset, model).items() if k in ArchConfig.__dataclass_fields__}
    kw.pop("model", None)
    return kw


def _task_model(task: str, preset: str, model: str):
    from minrnn.tasks import get_task
    T = get_task(task)
    fields = T.Config.__dataclass_fields__
    over = {k: v for k, v in T.preset(preset, model).items() if k in fields}
    return T(T.Config(**{**over, "model": model})).build_model()


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_presets_are_within_10_percent_of_mingru(preset):
    from minrnn.tasks.forecast.models import RNNForecaster
    from minrnn.tasks.rl.models import DecisionModel
    counts = {}
    for model in ("mingru", "mamba"):
        counts["shakespeare", model] = count_params(make_model(model, vocab_size=65,
                                                               **_params("shakespeare", preset, model)))
        for task in ("selective-copy", "chomsky"):  # generated data: build the task's own model
            counts[task, model] = count_params(_task_model(task, preset, model))
        kw = _params("rl", preset, model)
        counts["rl", model] = count_params(DecisionModel(model, 11, 3, **kw).backbone)
        for H in (96, 720):
            kw = _params("forecast", preset, model)
            kw.pop("highway", None)
            counts[f"forecast-{H}", model] = count_params(RNNForecaster(model, 7, 96, H, highway=True, **kw))
    for task in {t for t, _ in counts}:
        ratio = counts[task, "mamba"] / counts[task, "mingru"]
        if preset == "paper" and task == "selective-copy":
            assert counts[task, "mamba"] == 67_536  # the Mamba paper's own model (2 layers, D 64), not matched
            continue
        assert 0.9 <= ratio <= 1.1, (task, counts[task, "mingru"], counts[task, "mamba"])
    if preset == "cpu":  # pinned: docs/shakespeare.md and docs/selective_copy.md quote them
        assert counts["shakespeare", "mamba"] == 466_113 and counts["selective-copy", "mamba"] == 225_016
        assert counts["chomsky", "mamba"] == 147_364 and counts["rl", "mamba"] == 181_184


TINY = ["--steps", "2", "--eval-every", "2", "--threads", "1", "--no-progress"]


@pytest.mark.parametrize("task,extra", [
    ("selective-copy", ["--n-val", "16", "--n-test", "16"]),
    ("shakespeare", ["--seq-len", "32", "--batch-size", "2", "--eval-windows", "4"]),
    ("chomsky", ["--problem", "parity", "--batch-size", "4"]),
    ("rl", ["--env", "hopper", "--dataset", "medium", "--batch-size", "2", "--eval-batches", "1",
            "--eval-episodes", "0"]),
    ("forecast", ["--dataset", "ETTh1", "--batch-size", "4", "--eval-windows", "8"]),
])
def test_every_task_trains_a_few_steps_with_model_mamba(task, extra, tmp_path, capsys):
    rc = main(["train", task, "--preset", "cpu", "--model", "mamba", *TINY, *extra, "--out-dir", str(tmp_path),
               "--run-name", "m"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["steps"] == 2
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["task_config"]["model"] == "mamba" and cfg["model_class"] in ("MambaLM", "DecisionModel",
                                                                             "RNNForecaster")


def test_decision_mamba_acts_with_a_carried_state_equal_to_the_window_forward():
    """RL acting feeds (a_{t-1}, R_t, s_t) into the carried state; the same tokens read at once agree."""
    from minrnn.tasks.rl.models import Actor, DecisionModel
    torch.manual_seed(0)
    m = DecisionModel("mamba", 4, 2, context=5, d_model=16, n_layers=2, conv_kernel=4, mlp_ratio=1.0,
                      dropout=0.0).double().eval()
    actor = Actor(m, 2)
    assert actor.mode == "carried" and "MambaLM" in actor.step_kind
    K = 4
    R, S = torch.randn(2, K, 1, dtype=torch.float64), torch.randn(2, K, 4, dtype=torch.float64)
    A, T = torch.randn(2, K, 2, dtype=torch.float64).clamp(-1, 1), torch.arange(K).repeat(2, 1)
    acted = []
    for t in range(K):
        acted.append(actor.act(R[:, t, 0], S[:, t], T[:, t]))
        actor.observe_action(A[:, t])
    with torch.no_grad():
        pred, _ = m(R, S, A, T)
    assert (torch.stack(acted, 1) - pred).abs().max() < 1e-10
