"""Mamba (S6), the paper's main comparator, behind the interface of `minrnn.models`, built from `mambapy`.

What comes from the package (`mambapy.mamba`, pip install 'minrnn[mamba]'): `MambaConfig`, and each layer's
`ResidualBlock` whole: its RMSNorm, the `MambaBlock` mixer (in_proj to 2 x d_inner, causal depthwise conv1d
of kernel d_conv, SiLU, the input-dependent dt/B/C projections, the S4D-real A, the selective scan by
`mambapy.pscan`'s parallel scan or its sequential twin, the SiLU(z) gate, out_proj), the residual add, their
initialisation, and `ResidualBlock.step` with its (h (B, d_inner, d_state), conv inputs (B, d_inner,
d_conv-1)) cache. On CUDA with `mamba-ssm` installed, the selective scan inside it is mamba-ssm's fused
`selective_scan_fn`, through mambapy's own `use_cuda` hook (``mamba_scan="auto"`` or ``"mamba-ssm"``).

What is ours, the same parts as `models.block.SequenceModel` so that only the mixer differs: the token
embedding or input linear, dropout on it, the optional MLP sublayer after every Mamba block (pre-norm,
residual, GELU; ``mlp_ratio`` 0 turns it off, as in the Mamba paper), the final norm, the head, input and
state checks, and the step-by-step forward over a carried state.

State: one (h, conv inputs) pair per layer, mambapy's own cache layout; `step` is O(1) per token.
`forward(x)` (no state) runs mambapy's parallel forward, which keeps no state: it returns `NO_STATE`, which
`step` and `forward` refuse (never a silent restart from zeros). `forward(x, state)` with a state (e.g.
`init_state(B)`) runs the sequence through `step` and returns the state after it: how generation reads a
prompt and how RL acting feeds its tokens.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..extras import require
from .arch import MAMBA_SCANS


class _NoState:
    """What `MambaLM.forward(x)` returns for the state: the parallel forward does not compute one."""

    def __repr__(self):
        return "NO_STATE"


NO_STATE = _NoState()


def _mambapy():
    return require("mambapy.mamba", "mamba", "the Mamba model (--model mamba)")


def _mamba_ssm_scan():
    """mamba-ssm's fused selective scan, or None when mamba-ssm (or its CUDA build) is not importable."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a broken CUDA build raising at import
        return None
    return selective_scan_fn


class MambaLM(nn.Module):
    """Token or vector sequence model of `n_layers` mambapy ResidualBlocks (+ optional MLP sublayers):
    forward(x, state=None) -> (out, state), step(x_t, state) -> (out_t, state), init_state(batch_size)."""

    stateless_parallel = True  # forward(x) without a state keeps none (models.generate prefills with steps)

    def __init__(self, d_model: int = 64, n_layers: int = 2, expansion: float = 2.0, d_state: int = 16,
                 d_conv: int = 4, mlp_ratio: float = 0.0, dropout: float = 0.0, mamba_scan: str = "auto",
                 vocab_size: int = 0, input_dim: int = 0, output_dim: int = 0):
        super().__init__()
        mp = _mambapy()
        if mamba_scan not in MAMBA_SCANS:
            raise ValueError(f"mamba_scan: expected one of {', '.join(MAMBA_SCANS)}, got {mamba_scan!r}")
        if vocab_size <= 0 and (input_dim <= 0 or output_dim <= 0):
            raise ValueError("expected vocab_size > 0 (tokens) or both input_dim and output_dim > 0 (vectors), "
                             f"got vocab_size={vocab_size}, input_dim={input_dim}, output_dim={output_dim}")
        d_inner = int(round(expansion * d_model))
        if d_inner < 1 or d_conv < 1 or d_state < 1:
            raise ValueError(f"expected expansion * d_model >= 1, d_conv >= 1, d_state >= 1, got "
                             f"{expansion} * {d_model}, {d_conv}, {d_state}")
        self.vocab_size, self.input_dim, self.output_dim = vocab_size, input_dim, output_dim
        self.d_model, self.mamba_scan = d_model, mamba_scan
        self.config = mp.MambaConfig(d_model=d_model, n_layers=n_layers, d_state=d_state, d_conv=d_conv,
                                     pscan=mamba_scan != "sequential")
        self.config.d_inner = d_inner  # mambapy sets expand_factor * d_model; a fractional expansion is ours
        self.embed = nn.Embedding(vocab_size, d_model) if vocab_size > 0 else nn.Linear(input_dim, d_model)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(mp.ResidualBlock(self.config) for _ in range(n_layers))
        hidden = int(mlp_ratio * d_model)
        self.mlps = nn.ModuleList(
            nn.Sequential(mp.RMSNorm(d_model, self.config.rms_norm_eps), nn.Linear(d_model, hidden), nn.GELU(),
                          nn.Linear(hidden, d_model), nn.Dropout(dropout)) for _ in range(n_layers)
        ) if hidden > 0 else None
        self.norm = mp.RMSNorm(d_model, self.config.rms_norm_eps)
        self.head = nn.Linear(d_model, vocab_size if vocab_size > 0 else output_dim)
        self._cuda_scan = _mamba_ssm_scan() if mamba_scan in ("auto", "mamba-ssm") else None
        if self._cuda_scan is not None:
            for layer in self.layers:  # what mambapy's MambaBlock sets itself when built with use_cuda=True
                layer.mixer.selective_scan_cuda = self._cuda_scan

    # --- checks -------------------------------------------------------------------------------------------
    def _check(self, x, ndim: int):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if self.vocab_size > 0:
            if x.dtype not in (torch.int64, torch.int32) or x.dim() != ndim:
                shape = "(B, T)" if ndim == 2 else "(B,)"
                raise ValueError(f"tokens: expected an int64 tensor of shape {shape}, got {x.dtype} {tuple(x.shape)}")
            if x.numel():
                lo, hi = int(x.min()), int(x.max())
                if lo < 0 or hi >= self.vocab_size:
                    raise ValueError(f"tokens: expected ids in [0, {self.vocab_size}), got values in [{lo}, {hi}]")
        else:
            if x.dim() != ndim + 1 or x.shape[-1] != self.input_dim:
                shape = "(B, T, input_dim)" if ndim == 2 else "(B, input_dim)"
                raise ValueError(f"x: expected shape {shape} with input_dim={self.input_dim}, got {tuple(x.shape)}")
            if not x.is_floating_point():
                raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
        if ndim == 2 and x.shape[1] == 0:
            raise ValueError(f"x: expected at least one time step, got shape {tuple(x.shape)}")

    def _check_state(self, state, B: int):
        if state is NO_STATE:
            raise ValueError("state: the parallel forward (forward(x) without a state) keeps no state "
                             "(mambapy's forward computes none); to carry one, start from "
                             "model.init_state(B) and pass it to forward or step")
        c = self.config
        want = ((B, c.d_inner, c.d_state), (B, c.d_inner, c.d_conv - 1))
        if not isinstance(state, (list, tuple)) or len(state) != len(self.layers):
            raise ValueError(f"state: expected a list of {len(self.layers)} (h, conv inputs) pairs, got "
                             f"{type(state).__name__}")
        for i, s in enumerate(state):
            ok = (isinstance(s, (list, tuple)) and len(s) == 2 and all(isinstance(t, torch.Tensor) for t in s)
                  and tuple(s[0].shape) == want[0] and tuple(s[1].shape) == want[1])
            if not ok:
                got = tuple(tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in s) \
                    if isinstance(s, (list, tuple)) else type(s).__name__
                raise ValueError(f"state[{i}]: expected (h {want[0]}, conv inputs {want[1]}) for batch {B}, got {got}")

    def _set_scan(self, x: torch.Tensor):
        """Route the selective scan: mamba-ssm's kernel on CUDA where installed, else mambapy's scan."""
        use = x.is_cuda and self._cuda_scan is not None and x.dtype == torch.float32
        if self.mamba_scan == "mamba-ssm" and not use:
            why = ("mamba-ssm is not installed (pip install mamba-ssm, CUDA only)" if self._cuda_scan is None
                   else f"it needs float32 CUDA tensors, got {x.dtype} on {x.device}")
            raise ValueError(f"mamba_scan='mamba-ssm': {why}; use mamba_scan='auto' or 'pscan'")
        self.config.use_cuda = use

    # --- the model ----------------------------------------------------------------------------------------
    def init_state(self, batch_size: int):
        p, c = self.head.weight, self.config
        return [(p.new_zeros(batch_size, c.d_inner, c.d_state), p.new_zeros(batch_size, c.d_inner, c.d_conv - 1))
                for _ in self.layers]

    def _mlp(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return h if self.mlps is None else h + self.mlps[i](h)

    def forward(self, x: torch.Tensor, state=None):
        """x: tokens (B, T) or vectors (B, T, input_dim) -> (out (B, T, out), state). Without a state: the
        package's parallel forward, state NO_STATE; with one: step by step from it, and the state after."""
        self._check(x, 2)
        if state is not None:
            self._check_state(state, x.shape[0])
            outs = []
            for t in range(x.shape[1]):
                o, state = self._step(x[:, t], state)
                outs.append(o)
            return torch.stack(outs, 1), state
        self._set_scan(x)
        # mambapy's pscan cannot reshape an empty batch; its sequential scan returns the empty result
        self.config.pscan = self.mamba_scan != "sequential" and x.shape[0] > 0
        h = self.drop(self.embed(x))
        for i, layer in enumerate(self.layers):
            h = self._mlp(i, layer(h))
        return self.head(self.norm(h)), NO_STATE

    def step(self, x_t: torch.Tensor, state=None):
        """One step: tokens (B,) or vectors (B, input_dim) -> (out (B, out), state); None = init_state."""
        self._check(x_t, 1)
        state = self.init_state(x_t.shape[0]) if state is None else state
        self._check_state(state, x_t.shape[0])
        return self._step(x_t, state)

    def _step(self, x_t, state):
        h = self.drop(self.embed(x_t))
        new = []
        for i, layer in enumerate(self.layers):
            y, cache = layer.step(h, tuple(state[i]))
            h = self._mlp(i, y)
            new.append(cache)
        return self.head(self.norm(h)), new


def selective_scan_reference(mixer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """fp64 sequential twin of one mambapy MambaBlock's forward (x (B, L, D) -> (B, L, D)), written from the
    Mamba paper's equations (h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t, y_t = C_t h_t + D x_t, gated by
    SiLU(z)), for tests: it shares no code with the package's forward. One deliberate match: A and D are rounded
    to float32 first, because mambapy does so in every dtype (an fp64 model's A and D are fp32 numbers)."""
    c = mixer.config
    W = {k: v.detach().double() for k, v in mixer.state_dict().items()}
    x = x.double()
    L = x.shape[1]
    xz = x @ W["in_proj.weight"].T + (W["in_proj.bias"] if "in_proj.bias" in W else 0)
    u, z = xz[..., :c.d_inner], xz[..., c.d_inner:]
    k = W["conv1d.weight"][:, 0]  # (ED, d_conv)
    pad = F.pad(u, (0, 0, c.d_conv - 1, 0))
    u = sum(pad[:, j:j + L] * k[:, j] for j in range(c.d_conv)) + W["conv1d.bias"]
    u = F.silu(u)
    dbc = u @ W["x_proj.weight"].T
    dt, Bm, Cm = dbc.split([c.dt_rank, c.d_state, c.d_state], -1)
    dt = F.softplus(dt @ W["dt_proj.weight"].T + W["dt_proj.bias"])  # (B, L, ED)
    # A = -exp(A_log) and D rounded to float32, as mambapy computes them (.float()) whatever the model's dtype
    A = -torch.exp(W["A_log"].float()).double()  # (ED, N)
    Dv = W["D"].float().double()
    h = x.new_zeros(x.shape[0], c.d_inner, c.d_state)
    ys = []
    for t in range(L):
        h = torch.exp(dt[:, t, :, None] * A) * h + dt[:, t, :, None] * Bm[:, t, None, :] * u[:, t, :, None]
        ys.append((h * Cm[:, t, None, :]).sum(-1) + Dv * u[:, t])
    y = torch.stack(ys, 1) * F.silu(z)
    return y @ W["out_proj.weight"].T + (W["out_proj.bias"] if "out_proj.bias" in W else 0)
