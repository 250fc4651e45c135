"""Baselines behind the same interface as `SequenceModel`, and `make_model` that builds any of them.

Every model here takes tokens (B, T) (``vocab_size > 0``) or vectors (B, T, input_dim), returns
outputs (B, T, vocab_size | output_dim), and has ``forward(x, state=None) -> (out, state)``,
``step(x_t, state) -> (out_t, state)`` and ``init_state(batch_size)``:

- `Transformer`: a GPT (nanoGPT's "baby GPT" shape: pre-norm blocks, learned absolute positions, causal
  self-attention, GELU MLP, tied input/output embeddings for tokens). Its state is a KV cache, one (k, v)
  pair per layer of shape (B, n_heads, T_seen, head_dim), so `step` costs O(T_seen) per token, and
  ``forward(x[:, :k])`` then ``forward(x[:, k:], state)`` equals one forward over x. The context is limited
  to ``block_size`` positions (a ValueError beyond; `models.generate` slides the window).
- `RNNLM`: ``nn.GRU`` / ``nn.LSTM`` (cuDNN/oneDNN kernels) between an embedding and a head; its state is h
  (GRU) or (h, c) (LSTM), each (n_layers, B, hidden).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from .arch import ArchConfig, BlockConfig
from .block import ModelConfig, SequenceModel


def _io(module: nn.Module, d: int, vocab_size: int, input_dim: int, output_dim: int):
    if vocab_size <= 0 and (input_dim <= 0 or output_dim <= 0):
        raise ValueError("expected vocab_size > 0 (tokens) or both input_dim and output_dim > 0 (vectors), "
                         f"got vocab_size={vocab_size}, input_dim={input_dim}, output_dim={output_dim}")
    module.vocab_size, module.input_dim, module.output_dim = vocab_size, input_dim, output_dim
    embed = nn.Embedding(vocab_size, d) if vocab_size > 0 else nn.Linear(input_dim, d)
    return embed, vocab_size if vocab_size > 0 else output_dim


def _check_x(model, x: torch.Tensor, ndim: int):
    if model.vocab_size > 0:
        if x.dtype not in (torch.int64, torch.int32) or x.dim() != ndim:
            raise ValueError(f"tokens: expected an integer tensor with {ndim} dims, got {x.dtype} {tuple(x.shape)}")
    elif x.dim() != ndim + 1 or x.shape[-1] != model.input_dim:
        raise ValueError(f"x: expected {ndim + 1} dims with input_dim={model.input_dim} last, got {tuple(x.shape)}")


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d_model: expected a multiple of n_heads={n_heads}, got {d}")
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, cache=None):
        B, T, d = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if cache is not None:  # keys/values of the positions seen before: (B, nh, T_seen, hd)
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        S = k.shape[2]
        p = self.dropout if self.training else 0.0
        if S == T:  # no cache: plain causal mask
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:  # query i (absolute position S-T+i) sees keys 0..S-T+i
            mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, T, d)  # (B, T, d)
        return self.drop(self.proj(y)), (k, v)


class TransformerBlock(nn.Module):
    def __init__(self, d: int, n_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, n_heads, dropout)
        h = int(mlp_ratio * d)
        self.mlp = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, d), nn.Dropout(dropout))

    def forward(self, x, cache=None):
        a, cache = self.attn(self.ln1(x), cache)
        x = x + a
        return x + self.mlp(self.ln2(x)), cache


class Transformer(nn.Module):
    """GPT-style decoder: forward(x, kv_cache=None) -> (out, kv_cache); step(x_t, kv_cache); init_state(B)."""

    def __init__(self, d_model: int = 384, n_layers: int = 6, n_heads: int = 6, block_size: int = 256,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, vocab_size: int = 0, input_dim: int = 0,
                 output_dim: int = 0, positions: bool = True):
        super().__init__()
        self.embed, out = _io(self, d_model, vocab_size, input_dim, output_dim)
        self.d_model, self.n_heads, self.block_size = d_model, n_heads, block_size
        # learned absolute positions (GPT); positions=False drops them (the Decision Transformer's GPT-2 does:
        # its inputs already carry an episode-timestep embedding)
        self.pos = nn.Embedding(block_size, d_model) if positions else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, mlp_ratio, dropout)
                                    for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, out, bias=vocab_size <= 0)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections by depth
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / (2 * n_layers) ** 0.5)
        if vocab_size > 0:
            self.head.weight = self.embed.weight  # tied embeddings (nanoGPT)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def init_state(self, batch_size: int):
        p = self.ln_f.weight
        hd = self.d_model // self.n_heads
        z = p.new_zeros(batch_size, self.n_heads, 0, hd)
        return [(z, z) for _ in self.blocks]

    def seen(self, state) -> int:
        """Positions already in the KV cache."""
        return 0 if state is None else state[0][0].shape[2]

    def forward(self, x: torch.Tensor, state=None):
        """x: tokens (B, T) or vectors (B, T, input_dim); state: KV cache or None -> (out (B, T, out), cache)."""
        _check_x(self, x, 2)
        T, t0 = x.shape[1], self.seen(state)
        if t0 + T > self.block_size:
            raise ValueError(f"context: expected at most block_size={self.block_size} positions, "
                             f"got {t0} cached + {T} new")
        h = self.embed(x)
        if self.pos is not None:
            h = h + self.pos(torch.arange(t0, t0 + T, device=x.device))
        h = self.drop(h)
        caches = []
        for i, blk in enumerate(self.blocks):
            h, c = blk(h, None if state is None else state[i])
            caches.append(c)
        return self.head(self.ln_f(h)), caches

    def step(self, x_t: torch.Tensor, state=None):
        _check_x(self, x_t, 1)
        out, state = self.forward(x_t.unsqueeze(1), state)
        return out[:, 0], state


class RNNLM(nn.Module):
    """nn.GRU / nn.LSTM sequence model: embed -> dropout -> rnn (n_layers) -> dropout -> head."""

    def __init__(self, cell: str = "gru", d_model: int = 128, hidden: int = 0, n_layers: int = 2,
                 dropout: float = 0.0, vocab_size: int = 0, input_dim: int = 0, output_dim: int = 0):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell: expected 'gru' or 'lstm', got {cell!r}")
        self.embed, out = _io(self, d_model, vocab_size, input_dim, output_dim)
        self.cell, self.hidden, self.n_layers = cell, hidden or d_model, n_layers
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(d_model, self.hidden, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.hidden, out)

    def init_state(self, batch_size: int):
        p = self.head.weight
        h = p.new_zeros(self.n_layers, batch_size, self.hidden)
        return h if self.cell == "gru" else (h, h.clone())

    def forward(self, x: torch.Tensor, state=None):
        _check_x(self, x, 2)
        y, state = self.rnn(self.drop(self.embed(x)), state)
        return self.head(self.drop(y)), state

    def step(self, x_t: torch.Tensor, state=None):
        _check_x(self, x_t, 1)
        out, state = self.forward(x_t.unsqueeze(1), state)
        return out[:, 0], state


def make_model(arch: str, *, vocab_size: int = 0, input_dim: int = 0, output_dim: int = 0, block_size: int = 1024,
               positions: bool = True, **fields) -> nn.Module:
    """Build `arch` (mingru | minlstm | transformer | gru | lstm | mamba) for tokens (vocab_size) or vectors
    (input_dim -> output_dim). `fields` are those of `models.arch.ArchConfig` (validated there); fields that
    do not apply to `arch` are ignored. `block_size` is the Transformer's maximum context; `positions=False`
    gives it no position embedding."""
    c = ArchConfig(model=arch, **fields)
    io = dict(vocab_size=vocab_size, input_dim=input_dim, output_dim=output_dim)
    if arch in ("mingru", "minlstm"):
        block = {f.name: getattr(c, f.name) for f in dataclasses.fields(BlockConfig)}
        return SequenceModel(ModelConfig(cell=arch, **block, **io))
    if arch == "transformer":
        return Transformer(c.d_model, c.n_layers, c.n_heads, block_size, c.mlp_ratio, c.dropout,
                           positions=positions, **io)
    if arch == "mamba":
        from .mamba import MambaLM  # needs the mambapy package (pip install 'minrnn[mamba]')
        return MambaLM(c.d_model, c.n_layers, c.expansion, c.d_state, c.conv_kernel or 1, c.mlp_ratio, c.dropout,
                       c.mamba_scan, **io)
    return RNNLM(arch, c.d_model, c.rnn_hidden, c.n_layers, c.dropout, **io)


def count_params(model: nn.Module) -> int:
    """Trainable parameters, counting tied weights once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())
