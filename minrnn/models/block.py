"""The paper's model block and a sequence model built from it.

Block (pre-norm residual, as in the paper's experiments):
    x = x + CausalDepthwiseConv_k(x)        (optional, kernel 4 in the paper)
    x = x + minRNN(Norm(x))                 (minGRU or minLSTM, expansion e, projected back to d_model)
    x = x + MLP(Norm(x))                    (optional)
SequenceModel = embedding (tokens) or linear (vectors) -> n_layers blocks -> Norm -> head (tokens or vectors).

The recurrent state of a block is (conv window, rnn state): the conv keeps its last k-1 inputs, so
`step` is O(1) per token with the conv on, and forward(x[:, :k]) then forward(x[:, k:], state) equals one
forward over x. The conv must be causal: a centred conv leaks the future.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import MinGRU, MinLSTM
from .arch import BlockConfig

State = list  # one (conv_window | None, rnn_state) tuple per block


@dataclass
class ModelConfig(BlockConfig):
    """A SequenceModel: the block fields (`models/arch.py`, shared with every task config) plus its I/O."""
    cell: str = "mingru"            # mingru | minlstm
    vocab_size: int = 0             # token input/output when > 0
    input_dim: int = 0              # vector input when vocab_size == 0
    output_dim: int = 0             # vector output when vocab_size == 0

    def __post_init__(self):
        super().__post_init__()
        if self.cell not in ("mingru", "minlstm"):
            raise ValueError(f"cell: expected 'mingru' or 'minlstm', got {self.cell!r}")
        if self.vocab_size <= 0 and (self.input_dim <= 0 or self.output_dim <= 0):
            raise ValueError("expected vocab_size > 0 (tokens) or both input_dim and output_dim > 0 (vectors), "
                             f"got vocab_size={self.vocab_size}, input_dim={self.input_dim}, "
                             f"output_dim={self.output_dim}")


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class CausalConv1d(nn.Module):
    """Depthwise conv over time that sees only the current and the k-1 previous inputs."""

    def __init__(self, d: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(d, d, kernel, groups=d)

    def forward(self, x: torch.Tensor, window: torch.Tensor | None = None):
        """x (B, T, d), window (B, k-1, d) of the preceding inputs (zeros if None) -> (y, new window)."""
        B, T, d = x.shape
        if window is None:
            window = x.new_zeros(B, self.kernel - 1, d)
        xx = torch.cat([window, x], dim=1)  # (B, k-1+T, d)
        y = self.conv(xx.transpose(1, 2)).transpose(1, 2)  # (B, T, d)
        return y, xx[:, -(self.kernel - 1):]

    def step(self, x: torch.Tensor, window: torch.Tensor | None = None):
        """One step: x (B, d), window (B, k-1, d) -> (y (B, d), new window); same arithmetic as forward."""
        if window is None:
            window = x.new_zeros(x.shape[0], self.kernel - 1, x.shape[1])
        xx = torch.cat([window, x.unsqueeze(1)], dim=1)  # (B, k, d)
        y = torch.einsum("bkd,dk->bd", xx, self.conv.weight[:, 0]) + self.conv.bias
        return y, xx[:, 1:]


def _norm(kind: str, d: int) -> nn.Module:
    return RMSNorm(d) if kind == "rmsnorm" else nn.LayerNorm(d)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.conv = CausalConv1d(d, cfg.conv_kernel) if cfg.conv_kernel else None
        self.norm1 = _norm(cfg.norm, d)
        kw = dict(expansion=cfg.expansion, candidate=cfg.candidate, scan_impl=cfg.scan_impl)
        self.rnn = MinGRU(d, **kw) if cfg.cell == "mingru" else MinLSTM(d, normalize=cfg.normalize, **kw)
        self.mlp = None
        if cfg.mlp_ratio > 0:
            hidden = int(cfg.mlp_ratio * d)
            self.norm2 = _norm(cfg.norm, d)
            self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, state=None, reset=None):
        window, h = state if state is not None else (None, None)
        if self.conv is not None:
            c, window = self.conv(x, window)
            x = x + self.drop(c)
        y, h = self.rnn(self.norm1(x), h, reset=reset)
        x = x + self.drop(y)
        if self.mlp is not None:
            x = x + self.drop(self.mlp(self.norm2(x)))
        return x, (window, h)

    def step(self, x, state=None):
        """One step without the sequence machinery: x (B, d), state (window (B, k-1, d), h) -> (y, state).
        Same arithmetic as forward on T = 1 (the equivalence is tested)."""
        window, h = state if state is not None else (None, None)
        if self.conv is not None:
            c, window = self.conv.step(x, window)
            x = x + self.drop(c)
        y, h = self.rnn.step(self.norm1(x), h)
        x = x + self.drop(y)
        if self.mlp is not None:
            x = x + self.drop(self.mlp(self.norm2(x)))
        return x, (window, h)


class SequenceModel(nn.Module):
    """Token or vector sequence model: forward(x, state=None) -> (out, state); step(x_t, state)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d) if cfg.vocab_size > 0 else nn.Linear(cfg.input_dim, d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = _norm(cfg.norm, d)
        self.head = nn.Linear(d, cfg.vocab_size if cfg.vocab_size > 0 else cfg.output_dim)
        self.drop = nn.Dropout(cfg.dropout)

    def _check(self, x, ndim_tokens: int):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if self.cfg.vocab_size > 0:
            if x.dtype not in (torch.int64, torch.int32) or x.dim() != ndim_tokens:
                shape = "(B, T)" if ndim_tokens == 2 else "(B,)"
                raise ValueError(f"tokens: expected an int64 tensor of shape {shape}, got {x.dtype} {tuple(x.shape)}")
            # a value check reads the tokens; skipped while torch.compile traces (it would break the graph)
            if x.numel() and not torch.compiler.is_compiling():
                lo, hi = int(x.min()), int(x.max())
                if lo < 0 or hi >= self.cfg.vocab_size:
                    raise ValueError(f"tokens: expected ids in [0, {self.cfg.vocab_size}), got values in "
                                     f"[{lo}, {hi}]")
        elif x.dim() != ndim_tokens + 1 or x.shape[-1] != self.cfg.input_dim:
            shape = "(B, T, input_dim)" if ndim_tokens == 2 else "(B, input_dim)"
            raise ValueError(f"x: expected shape {shape} with input_dim={self.cfg.input_dim}, got {tuple(x.shape)}")
        elif not x.is_floating_point():
            raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
        if ndim_tokens == 2 and x.shape[1] == 0:
            raise ValueError(f"x: expected at least one time step, got shape {tuple(x.shape)}")

    def _check_state(self, state, B: int) -> None:
        """A state is one (conv window (B, k-1, d) | None, rnn state (1, B, H)) pair per block."""
        if state is None:
            return
        k, d = self.cfg.conv_kernel, self.cfg.d_model
        if not isinstance(state, (list, tuple)) or len(state) != len(self.blocks):
            got = f"{type(state).__name__} of {len(state)}" if isinstance(state, (list, tuple)) else type(state).__name__
            raise ValueError(f"state: expected a list of {len(self.blocks)} (window, h) pairs, got {got}")
        for i, (s, blk) in enumerate(zip(state, self.blocks)):
            want_w = (B, k - 1, d) if k else None
            want_h = (blk.rnn.num_layers * blk.rnn.num_directions, B, blk.rnn.hidden_size)
            ok = isinstance(s, (list, tuple)) and len(s) == 2
            w, h = s if ok else (None, None)
            ok = ok and ((w is None) if want_w is None else (isinstance(w, torch.Tensor) and tuple(w.shape) == want_w))
            ok = ok and isinstance(h, torch.Tensor) and tuple(h.shape) == want_h
            if not ok:
                raise ValueError(f"state[{i}]: expected (window {want_w}, h {want_h}) for batch {B}, got "
                                 f"{_shape_of(s)}")

    def forward(self, x: torch.Tensor, state: State | None = None, reset: torch.Tensor | None = None):
        """x: tokens (B, T) or vectors (B, T, input_dim) -> (logits/outputs (B, T, out), state)."""
        self._check(x, 2)
        self._check_state(state, x.shape[0])
        if reset is not None and self.cfg.conv_kernel:
            raise ValueError("reset needs conv_kernel=0: the conv window would mix episodes")
        h = self.drop(self.embed(x))
        new_state = []
        for i, block in enumerate(self.blocks):
            h, s = block(h, None if state is None else state[i], reset=reset)
            new_state.append(s)
        return self.head(self.norm(h)), new_state

    def step(self, x_t: torch.Tensor, state: State | None = None):
        """One step: tokens (B,) or vectors (B, input_dim) -> (out (B, out), state). O(1) in sequence length."""
        self._check(x_t, 1)
        self._check_state(state, x_t.shape[0])
        h = self.drop(self.embed(x_t))  # (B, d)
        new_state = []
        for i, block in enumerate(self.blocks):
            h, s = block.step(h, None if state is None else state[i])
            new_state.append(s)
        return self.head(self.norm(h)), new_state

    def step_route(self, batch_size: int, fast: bool = True) -> str | None:
        """How step-by-step decoding of `batch_size` sequences runs: None = the compiled C step
        (`models/fast_step.py`), else why the PyTorch `step` runs. The one place that decides it: generation,
        RL acting, the bench and `minrnn info` ask here."""
        from .fast_step import FAST_MAX_BATCH, why_not
        if not fast:
            return "fast=False"
        why = why_not(self)
        if why is None and batch_size > FAST_MAX_BATCH:
            why = f"batch {batch_size} > {FAST_MAX_BATCH}, where PyTorch's batched matmuls are faster"
        return why

    def init_state(self, batch_size: int) -> State:
        p = self.head.weight
        k = self.cfg.conv_kernel
        return [(p.new_zeros(batch_size, k - 1, self.cfg.d_model) if k else None, b.rnn.init_state(batch_size))
                for b in self.blocks]


def _shape_of(s) -> str:
    if isinstance(s, torch.Tensor):
        return str(tuple(s.shape))
    if isinstance(s, (list, tuple)):
        return "(" + ", ".join(_shape_of(v) for v in s) + ")"
    return type(s).__name__
