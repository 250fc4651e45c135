"""Decision models: acting step by step == full forward, a few training steps per model, a short roll-out."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from minrnn.tasks.rl.evaluate import normalized_score
from minrnn.tasks.rl.models import Actor, DecisionModel

ARCHS = ["mingru", "minlstm", "transformer"]


def _seq(B=3, K=9, obs=5, act=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, K, 1, generator=g), torch.randn(B, K, obs, generator=g),
            torch.rand(B, K, act, generator=g) * 2 - 1, torch.arange(K).expand(B, K) + 3)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("conv", [0, 4])
def test_acting_equals_forward(arch, conv):
    torch.manual_seed(0)
    m = DecisionModel(arch, 5, 2, context=9, d_model=32, n_layers=2, n_heads=2, conv_kernel=conv).eval()
    R, S, A, T = _seq()
    with torch.no_grad():
        y, _ = m(R, S, A, T)
    modes = ["carried", "window"] if arch != "transformer" else ["window"]
    for mode in modes:  # window mode with context >= T sees the whole history, like carried
        act = Actor(m, 3, mode)
        outs = []
        for t in range(9):
            outs.append(act.act(R[:, t, 0], S[:, t], T[:, t]))
            act.observe_action(A[:, t])
        torch.testing.assert_close(torch.stack(outs, 1), y, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ["mingru", "minlstm"])
@pytest.mark.parametrize("conv", [0, 4])
def test_carried_acting_native_step_equals_pytorch(arch, conv, monkeypatch):
    """Carried acting runs the backbone's C step (one call per token); it equals the PyTorch forward path
    and the full-sequence forward, and MINRNN_DISABLE_FAST_STEP / fast=False switch it off."""
    from minrnn.models import fast_step as fs
    if not fs.available():
        pytest.skip(f"native step unavailable: {fs.unavailable_reason()}")
    torch.manual_seed(2)
    m = DecisionModel(arch, 5, 2, context=9, d_model=32, n_layers=2, conv_kernel=conv).eval()
    R, S, A, T = _seq(seed=2)
    with torch.no_grad():
        y, _ = m(R, S, A, T)
    calls = []
    real = fs._lib.minrnn_model_step_f32
    monkeypatch.setattr(fs._lib, "minrnn_model_step_f32", lambda *a: calls.append(1) or real(*a))

    def play(actor):
        outs = []
        for t in range(9):
            outs.append(actor.act(R[:, t, 0], S[:, t], T[:, t]))
            actor.observe_action(A[:, t])
        return torch.stack(outs, 1)

    fast = Actor(m, 3, "carried")
    assert fast.fast and fast.step_kind == "native C step"
    y_fast = play(fast)
    assert len(calls) == 2 + 3 * 8  # (R_1, s_1), then (a_{t-1}, R_t, s_t): one kernel call per token
    slow = Actor(m, 3, "carried", fast=False)
    assert not slow.fast and "fast=False" in slow.step_kind
    y_slow = play(slow)
    assert len(calls) == 26
    torch.testing.assert_close(y_fast, y_slow, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(y_fast, y, atol=2e-6, rtol=1e-5)
    from minrnn.tasks.rl.models import FAST_MAX_BATCH
    big = Actor(m, FAST_MAX_BATCH + 1, "carried")
    assert not big.fast and f"batch {FAST_MAX_BATCH + 1} > {FAST_MAX_BATCH}" in big.step_kind
    monkeypatch.setenv("MINRNN_DISABLE_FAST_STEP", "1")
    off = Actor(m, 3, "carried")
    assert not off.fast and "MINRNN_DISABLE_FAST_STEP" in off.step_kind


def test_dt_backbone_has_no_position_embedding():
    """DT's GPT-2 drops position embeddings; the timestep embedding is its only position signal. Without
    them, the KV-cached step still equals the full forward, and the parameter count drops by block * d."""
    from minrnn.models.baselines import make_model
    m = DecisionModel("transformer", 5, 2, context=4, d_model=16, n_layers=1, n_heads=2).eval()
    assert m.backbone.pos is None and not any("pos" in k for k in m.backbone.state_dict())
    torch.manual_seed(4)
    kw = dict(input_dim=3, output_dim=2, d_model=8, n_layers=2, n_heads=2, block_size=6)
    with_pos, no_pos = make_model("transformer", **kw), make_model("transformer", positions=False, **kw)
    n = lambda mod: sum(p.numel() for p in mod.parameters())
    assert n(with_pos) - n(no_pos) == 6 * 8
    no_pos.eval()
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        y, _ = no_pos(x)
        st, outs = None, []
        for t in range(6):
            o, st = no_pos.step(x[:, t], st)
            outs.append(o)
    torch.testing.assert_close(torch.stack(outs, 1), y, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_window_mode_slides(arch):
    torch.manual_seed(1)
    m = DecisionModel(arch, 5, 2, context=4, d_model=16, n_layers=2, n_heads=1).eval()
    R, S, A, T = _seq(B=2, K=7, seed=1)
    act = Actor(m, 2, "window")
    for t in range(7):
        a = act.act(R[:, t, 0], S[:, t], T[:, t])
        act.observe_action(A[:, t])
    with torch.no_grad():
        y, _ = m(R[:, 3:], S[:, 3:], A[:, 3:], T[:, 3:])  # the last 4 steps only
    torch.testing.assert_close(a, y[:, -1], atol=2e-6, rtol=1e-5)


def test_actor_errors():
    m = DecisionModel("transformer", 5, 2, context=4, d_model=16, n_layers=1, n_heads=1)
    with pytest.raises(ValueError, match="needs a recurrent model"):
        Actor(m, 1, "carried")
    with pytest.raises(ValueError, match="expected one of mingru, minlstm, transformer, mamba"):
        DecisionModel("gru", 5, 2)
    R, S, A, T = _seq(obs=5)
    with pytest.raises(ValueError, match="actions: expected shape \\(B, K, 2\\)"):
        m(R, S, A[..., :1], T)


def test_normalized_score_references():
    np.testing.assert_allclose(normalized_score("hopper", [-20.272305, 3234.3]), [0.0, 100.0])
    np.testing.assert_allclose(normalized_score("halfcheetah", 5927.4105235), 50.0)
    with pytest.raises(ValueError, match="env: expected one of"):
        normalized_score("ant", 1.0)


@pytest.fixture(scope="module")
def hopper_like(tmp_path_factory):
    """A D4RL-layout file with Hopper's dims whose actions are a fixed function of the state."""
    h5py = pytest.importorskip("h5py", reason="h5py not installed")
    rng = np.random.default_rng(0)
    n = 600
    obs = rng.normal(size=(n, 11)).astype(np.float32)
    W = rng.normal(size=(11, 3)).astype(np.float32) / 3
    act = np.tanh(obs @ W).astype(np.float32)
    term = np.zeros(n, bool)
    term[[49, 149, 299, 599]] = True
    path = tmp_path_factory.mktemp("rl") / "hopper-tiny.hdf5"
    with h5py.File(path, "w") as f:
        for k, v in dict(observations=obs, actions=act, rewards=rng.normal(size=n).astype(np.float32),
                         terminals=term, timeouts=np.zeros(n, bool)).items():
            f.create_dataset(k, data=v)
    return str(path)


@pytest.mark.parametrize("arch", ["mingru", "minlstm", "dt"])
def test_few_training_steps(hopper_like, arch):
    from minrnn.tasks.rl.task import RLConfig, RLTask
    torch.manual_seed(0)
    task = RLTask(RLConfig(model=arch, env="hopper", data=hopper_like, context=8, d_model=32, n_layers=2,
                           dropout=0.0, val_every=4, eval_batches=2))
    assert task.n_episodes == 4 and task.train_data.n_transitions == 300  # episode 4 (300 steps) held out
    b8 = task.train_batch(step=5, seed=1, lo=0, hi=8)
    b_lo, b_hi = task.train_batch(5, 1, 0, 3), task.train_batch(5, 1, 3, 8)
    for k in b8:
        torch.testing.assert_close(b8[k], torch.cat([b_lo[k], b_hi[k]]))
    model = task.build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = task.evaluate(model.eval(), "train")["loss"]
    model.train()
    for step in range(40):
        loss, logs = task.loss(model, task.train_batch(step, 0, 0, 16))
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert np.isfinite(logs["action_mse"])
    last = task.evaluate(model.eval(), "train")["loss"]
    assert last < 0.6 * first, (first, last)


def test_short_rollout(hopper_like):
    pytest.importorskip("gymnasium", reason="gymnasium not installed")
    pytest.importorskip("mujoco", reason="mujoco not installed")
    from minrnn.tasks.rl.task import RLConfig, RLTask
    torch.manual_seed(0)
    task = RLTask(RLConfig(model="mingru", env="hopper", data=hopper_like, context=16, max_ep_len=16,
                           d_model=16, n_layers=2, val_every=4))
    model = task.build_model().eval()
    r1 = task.rollout(model, 2, seed=3, mode="carried")
    r2 = task.rollout(model, 2, seed=3, mode="window")  # window of 16 >= 16 steps: the same policy
    assert r1["mode"] == "carried" and r2["mode"] == "window"
    assert 1 <= max(r1["lengths"]) <= 16 and r1["env_steps"] == sum(r1["lengths"])
    np.testing.assert_allclose(r1["returns"], r2["returns"], rtol=1e-4)
    np.testing.assert_allclose(r1["score_mean"], normalized_score("hopper", r1["returns"]).mean())
    assert r1["steps_per_s"] > 0
