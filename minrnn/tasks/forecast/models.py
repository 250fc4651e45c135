"""Forecasters: (B, L, C) window of L rows and C channels -> (B, H, C) forecast of the next H rows.

- `RNNForecaster`: minGRU / minLSTM (or nn.GRU / nn.LSTM) in the shell the forecasting literature found to
  work: per-window instance normalisation (RevIN, Kim et al. ICLR 2022: subtract each window's mean, divide by
  its std, undo it on the forecast), channel independence (each variate is its own sequence, the weights are
  shared; PatchTST, Nie et al. ICLR 2023), patching (the sequence is one token per patch of `patch_len` rows,
  every `patch_stride` rows, the end padded by repeating the last row `patch_stride` times, as PatchTST does)
  and a direct multi-horizon head (one linear map from the last hidden state to all H steps, no feedback of
  forecasts), plus LSTNet's "highway" (Lai et al., SIGIR 2018): a linear map of the normalised window to
  the horizon added to the network's forecast. Each of the five is a switch, for the ablation;
  `decoder="autoregressive"` trains next-patch prediction with teacher forcing and rolls the forecast out one
  patch at a time from the carried state.
- `DLinear` (Zeng et al., AAAI 2023): moving-average trend + remainder, one linear map L -> H each, shared by
  the channels, weights initialised to 1/L (as the authors' code does).
- `ITransformer` (Liu et al., ICLR 2024): each variate's whole window is one token (Linear(L, d)), a
  Transformer encoder attends across variates, Linear(d, H) per token; with the same instance normalisation.
  Built from `torch.nn.TransformerEncoderLayer` (post-norm, GELU); the paper's optional time-feature tokens
  are not used (no model here sees calendar features).
- `Repeat`: the last observed row repeated H times (no parameters).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...models.baselines import make_model

RNN_MODELS = ("mingru", "minlstm", "gru", "lstm", "mamba")  # the sequence models RNNForecaster wraps
MODELS = RNN_MODELS + ("dlinear", "itransformer", "repeat")


def revin_norm(x: torch.Tensor, eps: float = 1e-5):
    """x (B, L, C) -> (x normalised per window and channel over time, (mean, std) each (B, 1, C))."""
    mean = x.mean(dim=1, keepdim=True)
    std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + eps)
    return (x - mean) / std, (mean, std)


def revin_denorm(y: torch.Tensor, stats) -> torch.Tensor:
    mean, std = stats
    return y * std + mean


def patchify(x: torch.Tensor, patch_len: int, stride: int, pad: bool = True) -> torch.Tensor:
    """x (B, L, c) -> patches (B, N, patch_len * c), each patch row-major (row, channel); with `pad` the end
    is padded by repeating the last row `stride` times, so N = (L - patch_len + stride) // stride + 1
    (PatchTST's layout). patch_len = stride = 1 is one token per row (never padded)."""
    B, L, c = x.shape
    if pad and (patch_len > 1 or stride > 1):
        x = torch.cat([x, x[:, -1:].expand(B, stride, c)], dim=1)
    p = x.unfold(1, patch_len, stride)  # (B, N, c, patch_len)
    return p.transpose(2, 3).reshape(B, p.shape[1], patch_len * c)


def n_patches(seq_len: int, patch_len: int, stride: int) -> int:
    if patch_len == 1 and stride == 1:
        return seq_len
    return (seq_len - patch_len + stride) // stride + 1


class RNNForecaster(nn.Module):
    def __init__(self, arch: str, n_channels: int, seq_len: int, horizon: int, *, patch_len: int = 16,
                 patch_stride: int = 8, revin: bool = True, channel_independent: bool = True,
                 decoder: str = "direct", highway: bool = False, **arch_kwargs):
        super().__init__()
        if arch not in RNN_MODELS:
            raise ValueError(f"model: expected one of {RNN_MODELS} for the RNN forecaster, got {arch!r}")
        if patch_len > seq_len:
            raise ValueError(f"patch_len: expected <= seq_len = {seq_len}, got {patch_len}")
        self.C, self.L, self.H = n_channels, seq_len, horizon
        self.revin, self.ci, self.decoder = revin, channel_independent, decoder
        self.patch_len = patch_len
        if decoder == "autoregressive" and seq_len % patch_len:
            raise ValueError(f"patch_len: autoregressive decoding tiles the window with patches, expected a "
                             f"divisor of seq_len = {seq_len}, got {patch_len}")
        # autoregressive decoding feeds predicted patches back, so its patches must tile the time axis
        self.stride = patch_len if decoder == "autoregressive" else patch_stride
        c = 1 if channel_independent else n_channels
        # LSTNet's "highway": a linear map of the (normalised) window to the horizon, per channel, added to the
        # network's forecast, so the network learns what a linear forecaster misses
        self.highway = nn.Linear(seq_len, horizon) if highway else None
        out = patch_len * c if decoder == "autoregressive" else horizon * c
        self.core = make_model(arch, input_dim=patch_len * c, output_dim=out,
                               block_size=n_patches(seq_len, patch_len, self.stride) + math.ceil(horizon / patch_len),
                               **arch_kwargs)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B', T, c): one sequence per channel when channel-independent."""
        if self.ci:
            B, T, C = x.shape
            return x.permute(0, 2, 1).reshape(B * C, T, 1)
        return x

    def _untokens(self, y: torch.Tensor, B: int) -> torch.Tensor:
        """(B', T, c) -> (B, T, C)."""
        if self.ci:
            return y.reshape(B, self.C, -1).permute(0, 2, 1)
        return y

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, C) -> forecast (B, H, C). Autoregressive decoding with `y` (B, H, C) given: the
        teacher-forced next-patch predictions of y (training)."""
        B = x.shape[0]
        stats = None
        if self.revin:
            x, stats = revin_norm(x)
            if y is not None:
                y = (y - stats[0]) / stats[1]
        if self.decoder == "autoregressive":
            out = self._autoregressive(self._tokens(x), None if y is None else self._tokens(y))
        else:
            h, _ = self.core(patchify(self._tokens(x), self.patch_len, self.stride))  # (B', N, H*c)
            out = h[:, -1].reshape(h.shape[0], self.H, -1)
        if self.highway is not None:
            out = out + self.highway(self._tokens(x).transpose(1, 2)).transpose(1, 2)  # (B', H, c)
        out = self._untokens(out, B)
        return revin_denorm(out, stats) if stats is not None else out

    def _autoregressive(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        P, Bp, c = self.patch_len, x.shape[0], x.shape[2]
        k = math.ceil(self.H / P)
        if y is not None:  # teacher forcing: inputs are the window and all but the last target patch
            seq = torch.cat([x, y[:, :(k - 1) * P]], dim=1)
            out, _ = self.core(patchify(seq, P, P, pad=False))  # (B', N + k - 1, P*c)
            n_in = self.L // P
            return out[:, n_in - 1:].reshape(Bp, k * P, c)[:, :self.H]
        window = patchify(x, P, P, pad=False)
        # Mamba's parallel forward keeps no state: read the window step by step from a zero state instead
        start = self.core.init_state(Bp) if getattr(self.core, "stateless_parallel", False) else None
        out, state = self.core(window, start)
        nxt, preds = out[:, -1:], [out[:, -1:]]
        for _ in range(k - 1):
            nxt, state = self.core(nxt, state)
            preds.append(nxt)
        return torch.cat(preds, dim=1).reshape(Bp, k * P, c)[:, :self.H]


class DLinear(nn.Module):
    def __init__(self, seq_len: int, horizon: int, moving_avg: int = 25):
        super().__init__()
        self.k = moving_avg
        self.seasonal = nn.Linear(seq_len, horizon)
        self.trend = nn.Linear(seq_len, horizon)
        for lin in (self.seasonal, self.trend):
            nn.init.constant_(lin.weight, 1.0 / seq_len)

    def decompose(self, x: torch.Tensor):
        """x (B, L, C) -> (remainder, trend): trend = moving average of width k over the series padded at
        both ends by repeating its first / last row (k - 1) // 2 times."""
        pad = (self.k - 1) // 2
        xp = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], dim=1)
        trend = F.avg_pool1d(xp.transpose(1, 2), self.k, stride=1).transpose(1, 2)
        return x - trend, trend

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        s, t = self.decompose(x)
        out = self.seasonal(s.transpose(1, 2)) + self.trend(t.transpose(1, 2))  # (B, C, H)
        return out.transpose(1, 2)


class ITransformer(nn.Module):
    def __init__(self, seq_len: int, horizon: int, d_model: int = 128, n_layers: int = 2, n_heads: int = 8,
                 d_ff: int = 0, dropout: float = 0.1, revin: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model: expected a multiple of n_heads={n_heads}, got {d_model}")
        self.revin = revin
        self.embed = nn.Linear(seq_len, d_model)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff or 4 * d_model, dropout, activation="gelu",
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        self.head = nn.Linear(d_model, horizon)

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        stats = None
        if self.revin:
            x, stats = revin_norm(x)
        tok = self.drop(self.embed(x.transpose(1, 2)))  # (B, C, d): one token per variate
        out = self.head(self.encoder(tok)).transpose(1, 2)  # (B, H, C)
        return revin_denorm(out, stats) if stats is not None else out


class Repeat(nn.Module):
    """The last observed row, repeated over the horizon: no parameters, nothing to train."""

    def __init__(self, horizon: int):
        super().__init__()
        self.H = horizon

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return x[:, -1:].expand(-1, self.H, -1).clone()
