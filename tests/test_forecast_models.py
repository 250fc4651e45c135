"""Forecasters: values pinned where they are known in closed form (repeat, DLinear at init, RevIN, patches),
and the structural claims checked exactly (channel independence, autoregressive rollout = teacher forcing on
its own forecast, highway = linear part)."""
import pytest
import torch

from minrnn.tasks.forecast.models import (DLinear, ITransformer, Repeat, RNNForecaster, n_patches, patchify,
                                          revin_denorm, revin_norm)

ARCH = dict(d_model=16, n_layers=2, expansion=2.0, mlp_ratio=2.0, conv_kernel=0, dropout=0.0)


def test_patchify_layout_and_padding():
    x = torch.arange(2 * 8 * 2, dtype=torch.float64).reshape(2, 8, 2)  # (B, L, c)
    p = patchify(x, 4, 2)  # padded by 2 copies of the last row: rows 0..9 -> patches at 0, 2, 4, 6
    assert p.shape == (2, n_patches(8, 4, 2), 8) == (2, 4, 8)
    assert torch.equal(p[0, 1], x[0, 2:6].reshape(-1))  # row-major (row, channel)
    assert torch.equal(p[1, 3], torch.cat([x[1, 6:8], x[1, 7:8], x[1, 7:8]]).reshape(-1))
    assert torch.equal(patchify(x, 1, 1), x)  # one token per row, no padding
    assert torch.equal(patchify(x, 4, 4, pad=False), x.reshape(2, 2, 8))


def test_revin_roundtrip_and_statistics():
    x = torch.randn(3, 50, 4, dtype=torch.float64) * 7 + 3
    z, stats = revin_norm(x)
    torch.testing.assert_close(z.mean(1), torch.zeros(3, 4, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.std(1, unbiased=False), torch.ones(3, 4, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(revin_denorm(z, stats), x, atol=1e-12, rtol=1e-12)


def test_repeat_is_the_last_row():
    x = torch.randn(2, 10, 3)
    y = Repeat(5)(x)
    assert y.shape == (2, 5, 3) and torch.equal(y, x[:, -1:].repeat(1, 5, 1))


def test_dlinear_decomposition_and_init():
    m = DLinear(48, 12, moving_avg=25).double()
    t = torch.arange(48, dtype=torch.float64)
    x = (0.5 * t + 3).reshape(1, 48, 1)
    s, trend = m.decompose(x)
    # a straight line is its own moving average away from the (replicate-padded) ends
    torch.testing.assert_close(trend[0, 12:36, 0], x[0, 12:36, 0], atol=1e-12, rtol=0)
    torch.testing.assert_close(s + trend, x, atol=1e-12, rtol=0)
    # the first trend value: mean of 12 copies of x[0] and x[0..12]
    assert abs(float(trend[0, 0, 0]) - float((12 * x[0, 0, 0] + x[0, :13, 0].sum()) / 25)) < 1e-12
    # weights 1/L at init: every horizon step is (mean of remainder + mean of trend) + both biases = mean(x) + b
    b = m.seasonal.bias + m.trend.bias
    xr = torch.randn(2, 48, 3, dtype=torch.float64)
    want = xr.mean(1, keepdim=True) + b.reshape(1, 12, 1)
    # 1/48 was rounded to float32 before .double(): relative error <= 6e-8 per weight
    torch.testing.assert_close(m(xr), want.expand(2, 12, 3), atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("arch", ["mingru", "minlstm", "gru", "lstm"])
def test_channel_independence_is_exact(arch):
    """A channel-independent forecaster's weights do not depend on C: the C-channel forecast of channel j
    equals the 1-channel model's forecast of channel j alone (same weights)."""
    torch.manual_seed(0)
    m3 = RNNForecaster(arch, 3, 32, 8, patch_len=8, patch_stride=4, highway=True, **ARCH).double().eval()
    m1 = RNNForecaster(arch, 1, 32, 8, patch_len=8, patch_stride=4, highway=True, **ARCH).double().eval()
    m1.load_state_dict(m3.state_dict())
    x = torch.randn(4, 32, 3, dtype=torch.float64)
    y = m3(x)
    assert y.shape == (4, 8, 3)
    for j in range(3):
        torch.testing.assert_close(y[:, :, j:j + 1], m1(x[:, :, j:j + 1]), atol=1e-12, rtol=1e-12)


def test_revin_makes_the_forecast_shift_and_scale_equivariant():
    torch.manual_seed(1)
    m = RNNForecaster("mingru", 2, 32, 8, patch_len=8, patch_stride=4, **ARCH).double().eval()
    x = torch.randn(3, 32, 2, dtype=torch.float64)
    # exact but for RevIN's eps = 1e-5 inside sqrt(var + eps): it moves the normalised window by ~eps/2
    # relative (var ~ 1 here), which the network may amplify a few times; without RevIN the error is O(1)
    torch.testing.assert_close(m(5 * x - 2), 5 * m(x) - 2, atol=5e-4, rtol=5e-4)
    it = ITransformer(32, 8, d_model=16, n_layers=1, n_heads=2, dropout=0.0).double().eval()
    torch.testing.assert_close(it(5 * x - 2), 5 * it(x) - 2, atol=5e-4, rtol=5e-4)
    off = RNNForecaster("mingru", 2, 32, 8, patch_len=8, patch_stride=4, revin=False, **ARCH).double().eval()
    assert (off(5 * x - 2) - (5 * off(x) - 2)).abs().max() > 0.1


@pytest.mark.parametrize("arch", ["mingru", "gru"])
@pytest.mark.parametrize("H", [8, 13])
def test_autoregressive_rollout_equals_teacher_forcing_on_its_own_forecast(arch, H):
    """The rollout feeds its own patches back through the carried state; teacher forcing with the rollout's
    forecast as the target must reproduce it exactly (state continuation == one forward)."""
    torch.manual_seed(2)
    m = RNNForecaster(arch, 2, 32, H, patch_len=8, decoder="autoregressive", **ARCH).double().eval()
    x = torch.randn(3, 32, 2, dtype=torch.float64)
    y = m(x)
    assert y.shape == (3, H, 2)
    torch.testing.assert_close(m(x, y), y, atol=1e-10, rtol=1e-10)
    with pytest.raises(ValueError, match="divisor of seq_len"):
        RNNForecaster(arch, 2, 30, H, patch_len=8, decoder="autoregressive", **ARCH)


def test_highway_is_the_linear_part():
    """With the network's head zeroed, the forecast is exactly the highway's linear map of the normalised
    window, denormalised."""
    torch.manual_seed(3)
    m = RNNForecaster("mingru", 2, 32, 8, patch_len=8, patch_stride=4, highway=True, **ARCH).double().eval()
    torch.nn.init.zeros_(m.core.head.weight)
    torch.nn.init.zeros_(m.core.head.bias)
    x = torch.randn(3, 32, 2, dtype=torch.float64)
    z, stats = revin_norm(x)
    want = revin_denorm(m.highway(z.transpose(1, 2)).transpose(1, 2), stats)
    torch.testing.assert_close(m(x), want, atol=1e-12, rtol=1e-12)


def test_gradients_reach_every_parameter():
    torch.manual_seed(4)
    for m in (RNNForecaster("minlstm", 3, 32, 8, patch_len=8, patch_stride=4, highway=True,
                            channel_independent=False, **ARCH), DLinear(32, 8),
              ITransformer(32, 8, d_model=16, n_layers=1, n_heads=2, dropout=0.0)):
        m(torch.randn(2, 32, 3)).square().mean().backward()
        dead = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not dead, (type(m).__name__, dead)
