"""Fast O(1) generation step for `SequenceModel` (minGRU/minLSTM LMs): the whole model step in one C call.

`SequenceModel.step` costs ~100 small PyTorch ops per token (~3 ms at batch 1 on one core, almost all of it
dispatch overhead, not arithmetic: the cpu-preset model is ~0.5 M multiply-adds per token). `csrc/step.c`
does the same arithmetic (embedding, per block conv window / norm / gate Linear / minGRU or minLSTM update /
projection / MLP, final norm, head) in one call; it is built with the system C compiler on first use, cached
and loaded with ctypes like the scan kernels (`scan/build.py`), and ``MINRNN_DISABLE_NATIVE`` turns it off.

`fast_step(model, x_t, state)` has the contract of `model.step` and falls back to it (no error) where the
kernel does not apply: no compiler, ``MINRNN_DISABLE_NATIVE`` / ``MINRNN_DISABLE_FAST_STEP`` set, training
mode, grad enabled, not fp32 on CPU, or a module layout the kernel does not know (`why_not` says which).
The kernel reads the weights in place through their data pointers, re-read on every call, so in-place
updates (optimizer steps, load_state_dict) and replaced parameter tensors (`.to()`, `p.data = ...`) are
always seen: there is no packed copy to go stale. (Replacing whole submodules after the first call is not
tracked; call `forget(model)` then.) States keep the PyTorch layout, so `step`, `forward` and `fast_step`
can be mixed freely.
"""
from __future__ import annotations

import ctypes
import weakref
from pathlib import Path

import torch
import torch.nn as nn

from .. import settings
from ..scan.build import compile_library, load_library
from .block import RMSNorm, SequenceModel

_SRC = Path(__file__).resolve().parent.parent / "csrc" / "step.c"
_FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-shared", "-fPIC"]
_lib = None
_error: str | None = None
STEP_KIND_NATIVE = "native C step (minrnn/csrc/step.c)"
# The C step works row by row (single-threaded, vectorised within a row): 3.4x PyTorch's per-step forward at one
# sequence, even at 8, slower at 16 (scripts/experiments/rl_acting.py --batch 1|2|4|8|16, docs/rl.md); above
# this batch `SequenceModel.step_route` picks the PyTorch step.
FAST_MAX_BATCH = 4
_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> _Plan, or the reason it has none


def build() -> Path:
    """Compile csrc/step.c if needed (cached by a hash of source and flags) and return the library path."""
    return compile_library("minrnn_step", [_SRC], _FLAGS, libs=("-lm",))


def _declare(lib) -> None:
    lib.minrnn_model_step_f32.argtypes = [ctypes.c_void_p] * 8 + [ctypes.c_int64]
    lib.minrnn_model_step_f32.restype = ctypes.c_int


def _load():
    global _lib, _error
    if _lib is None and _error is None:
        _lib, _error = load_library(build, _declare)
    return _lib


def available() -> bool:
    """Whether the compiled kernel can be used at all (compiler present, not disabled)."""
    return _load() is not None


def unavailable_reason() -> str:
    _load()
    return _error or ""


class _Plan:
    """What the kernel needs from one model: config ints, norm eps, and the parameters in kernel order."""

    def __init__(self, model: SequenceModel):
        cfg = model.cfg
        b0 = model.blocks[0]
        H = b0.rnn.hidden_size
        hid = b0.mlp[0].out_features if b0.mlp is not None else 0
        gelu_tanh = b0.mlp is not None and b0.mlp[1].approximate == "tanh"
        token = isinstance(model.embed, nn.Embedding)
        k = b0.conv.kernel if b0.conv is not None else 0
        # the layers' own attributes, which their PyTorch step reads (the config only built them)
        ints = [len(model.blocks), cfg.d_model, H, hid, k, int(b0.rnn.cell == "minlstm"),
                int(bool(b0.rnn.normalize)), int(b0.rnn.candidate == "g"), int(isinstance(model.norm, nn.LayerNorm)),
                model.embed.num_embeddings if token else 0, 0 if token else model.embed.in_features,
                model.head.out_features, int(gelu_tanh)]
        self.cfg = (ctypes.c_int64 * len(ints))(*ints)
        norms = [n for blk in model.blocks for n in (blk.norm1, getattr(blk, "norm2", None))] + [model.norm]
        self.eps = (ctypes.c_float * len(norms))(*[n.eps if n is not None else 0.0 for n in norms])
        self.params = [model.embed.weight, None if token else model.embed.bias, *_norm_params(model.norm),
                       model.head.weight, model.head.bias]
        for blk in model.blocks:
            self.params += _block_params(blk)
        self.k, self.d, self.H, self.out = k, cfg.d_model, H, ints[11]
        self.n_blocks = len(model.blocks)
        self.shapes = [None if p is None else tuple(p.shape) for p in self.params]
        self.ptrs: tuple | None = None
        self.table = None

    def pointers(self):
        """The ctypes pointer table of the current parameters, or None if one is no longer fp32 contiguous CPU."""
        ptrs = tuple(0 if p is None else p.data_ptr() for p in self.params)
        if ptrs != self.ptrs:  # first call, or a parameter tensor was replaced: check it before using it
            for p, shape in zip(self.params, self.shapes):
                if p is not None and (p.dtype != torch.float32 or p.device.type != "cpu" or not p.is_contiguous()
                                      or tuple(p.shape) != shape):
                    return None
            self.table = (ctypes.c_void_p * len(ptrs))(*[p or None for p in ptrs])
            self.ptrs = ptrs
        return self.table


def _norm_params(n):
    return (n.weight, None) if isinstance(n, RMSNorm) else (n.weight, n.bias)


def _block_params(blk) -> list:
    """One block's parameters in the kernel's order (L_CONV_W ... L_FC2_B in csrc/step.c); None where absent."""
    conv = [blk.conv.conv.weight, blk.conv.conv.bias] if blk.conv is not None else [None, None]
    rnn = [*blk.rnn.gate_params(0), blk.rnn.projs[0].weight, blk.rnn.projs[0].bias]
    if blk.mlp is None:
        mlp = [None] * 6
    else:
        mlp = [*_norm_params(blk.norm2), blk.mlp[0].weight, blk.mlp[0].bias, blk.mlp[2].weight, blk.mlp[2].bias]
    return conv + list(_norm_params(blk.norm1)) + rnn + mlp


def _block_key(b) -> tuple:
    return (b.rnn.cell, b.rnn.normalize, b.rnn.candidate, b.conv.kernel if b.conv is not None else 0,
            type(b.norm1), b.mlp is not None and b.mlp[0].out_features, b.rnn.hidden_size)


def _structure_reason(model) -> str | None:
    """Why the kernel cannot run this model's layout (None if it can)."""
    if not isinstance(model, SequenceModel):
        return f"not a minGRU/minLSTM SequenceModel ({type(model).__name__})"
    if isinstance(model.embed, nn.Embedding) and (model.embed.max_norm is not None):
        return "embedding with max_norm"
    b0 = model.blocks[0]
    if any(_block_key(b) != _block_key(b0) for b in model.blocks) or type(model.norm) is not type(b0.norm1):
        return "blocks of different shapes or options"
    for blk in model.blocks:
        r = blk.rnn
        if r.num_layers != 1 or r.bidirectional or r.h0 is not None or r.proj_size != model.cfg.d_model:
            return "rnn layer layout (stacked, bidirectional, learned h0 or no projection)"
        if r.gate_params(0)[1] is None or r.projs[0].bias is None:
            return "rnn Linear without bias"
        for n in (blk.norm1, getattr(blk, "norm2", None)):
            if isinstance(n, nn.LayerNorm) and (n.weight is None or n.bias is None):
                return "LayerNorm without affine parameters"
        if blk.mlp is not None and blk.mlp[1].approximate not in ("none", "tanh"):
            return f"GELU approximate={blk.mlp[1].approximate!r}"
    return None


def _plan(model):
    p = _plans.get(model)
    if p is None:
        why = _structure_reason(model)
        p = why if why is not None else _Plan(model)
        _plans[model] = p
    return p


def forget(model) -> None:
    """Drop the cached plan of `model` (needed only after replacing its submodules)."""
    _plans.pop(model, None)


def why_not(model) -> str | None:
    """Why `fast_step(model, ...)` would fall back to `model.step` now (None: the C kernel runs)."""
    if settings.flag("MINRNN_DISABLE_FAST_STEP"):
        return "disabled by MINRNN_DISABLE_FAST_STEP"
    if not isinstance(model, SequenceModel):
        return f"not a minGRU/minLSTM SequenceModel ({type(model).__name__})"
    if _load() is None:
        return f"native kernel unavailable: {_error}"
    if model.training:
        return "model in training mode (dropout)"
    if torch.is_grad_enabled():
        return "grad enabled (the kernel has no backward)"
    plan = _plan(model)
    if isinstance(plan, str):
        return plan
    if plan.pointers() is None:
        return "parameters not fp32 contiguous on CPU"
    return None


def step_kind(model) -> str:
    """STEP_KIND_NATIVE or 'PyTorch step (<reason>)', for messages."""
    why = why_not(model)
    return STEP_KIND_NATIVE if why is None else f"PyTorch step ({why})"


def _state_in(plan: _Plan, state, B: int) -> list | None:
    """Contiguous (window, h) tensors per block in the kernel's order; None if one is not fp32 on CPU (the
    PyTorch step then decides); ValueError if the state's layout or shapes do not fit the model."""
    wshape, hshape = (B, plan.k - 1, plan.d), (1, B, plan.H)
    if not isinstance(state, (list, tuple)) or len(state) != plan.n_blocks:
        raise ValueError(f"state: expected a list of {plan.n_blocks} (window, h) pairs, got {_desc(state)}")
    out = []
    for i, s in enumerate(state):
        if not isinstance(s, (tuple, list)) or len(s) != 2:
            raise ValueError(f"state[{i}]: expected a (window, h) pair, got {_desc(s)}")
        for t, shape, name in ((s[0], wshape, "window"), (s[1], hshape, "h")):
            if plan.k == 0 and name == "window":
                if t is not None:
                    raise ValueError(f"state[{i}] window: expected None (conv_kernel=0), got {_desc(t)}")
                out.append(None)
                continue
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
                raise ValueError(f"state[{i}] {name}: expected a tensor of shape {shape}, got {_desc(t)}")
            if t.dtype != torch.float32 or t.device.type != "cpu":
                return None
            out.append(t.contiguous())
    return out


def _desc(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} {tuple(x.shape)}"
    return f"{type(x).__name__} of {len(x)}" if isinstance(x, (list, tuple)) else type(x).__name__


def fast_step(model, x_t: torch.Tensor, state=None):
    """`model.step(x_t, state)` through the C kernel where it applies (see `why_not`), else `model.step`."""
    if settings.flag("MINRNN_DISABLE_FAST_STEP") or not isinstance(model, SequenceModel) \
            or model.training or torch.is_grad_enabled() or _load() is None:
        return model.step(x_t, state)
    plan = _plan(model)
    table = None if isinstance(plan, str) else plan.pointers()
    if table is None:
        return model.step(x_t, state)
    model._check(x_t, 1)
    if x_t.device.type != "cpu" or (x_t.is_floating_point() and x_t.dtype != torch.float32):
        return model.step(x_t, state)
    B = x_t.shape[0]
    sin = _state_in(plan, model.init_state(B) if state is None else state, B)
    if sin is None:
        return model.step(x_t, state)  # a state of another dtype/device: the PyTorch step decides
    x = x_t.to(torch.int64).contiguous() if not x_t.is_floating_point() else x_t.contiguous()
    f32 = torch.float32
    new = [(torch.empty(B, plan.k - 1, plan.d, dtype=f32) if plan.k else None, torch.empty(1, B, plan.H, dtype=f32))
           for _ in model.blocks]
    sout = [t for pair in new for t in pair]
    out = torch.empty(B, plan.out, dtype=f32)
    ptr = ctypes.c_void_p
    rc = _lib.minrnn_model_step_f32(
        plan.cfg, table, plan.eps, ptr(x.data_ptr()) if not x.is_floating_point() else None,
        ptr(x.data_ptr()) if x.is_floating_point() else None,
        (ptr * len(sin))(*[None if t is None else t.data_ptr() for t in sin]),
        (ptr * len(sout))(*[None if t is None else t.data_ptr() for t in sout]), ptr(out.data_ptr()), B)
    if rc > 0:
        raise IndexError(f"x_t: expected token ids in [0, {model.cfg.vocab_size}), got {int(x[rc - 1])} "
                         f"in row {rc - 1}")
    if rc < 0:
        raise MemoryError("fast step: out of memory")
    return out, new


class Decoder:
    """The generation loop's step: like `fast_step`, but updating a private copy of the state in place.

    `generate` owns its state and returns none of it, and no other code runs between its steps, so the
    pointer table checked here at the start stays valid for the whole loop: each call is one kernel call.
    The returned logits buffer (B, out) is overwritten by the next call (use it before stepping again).
    """

    def __init__(self, model: SequenceModel, state, batch_size: int):
        why = why_not(model)
        if why is not None:
            raise RuntimeError(f"fast step not applicable: {why}")
        if model.cfg.vocab_size <= 0:
            raise ValueError("Decoder: expected a token model (vocab_size > 0), got a vector model")
        plan = _plan(model)
        B = batch_size
        sin = _state_in(plan, model.init_state(B) if state is None else state, B)
        if sin is None:
            raise TypeError("state: expected fp32 CPU tensors")
        self.state = [None if t is None else t.clone(memory_format=torch.contiguous_format) for t in sin]
        self.ptrs = (ctypes.c_void_p * len(sin))(*[None if t is None else t.data_ptr() for t in self.state])
        self.out = torch.empty(B, plan.out, dtype=torch.float32)
        self.args = (plan.cfg, plan.pointers(), plan.eps)
        self.vocab, self.B, self.plan = model.cfg.vocab_size, B, plan
        self.out_ptr = ctypes.c_void_p(self.out.data_ptr())

    def __call__(self, tok: torch.Tensor) -> torch.Tensor:
        """tok (B,) int64 token ids -> logits (B, out) (a reused buffer)."""
        if tok.dtype != torch.int64 or tok.shape != (self.B,) or not tok.is_contiguous():
            raise ValueError(f"tok: expected contiguous int64 ({self.B},), got {tok.dtype} {tuple(tok.shape)}")
        rc = _lib.minrnn_model_step_f32(*self.args, ctypes.c_void_p(tok.data_ptr()), None, self.ptrs, self.ptrs,
                                        self.out_ptr, self.B)
        if rc:
            if rc < 0:
                raise MemoryError("fast step: out of memory")
            raise IndexError(f"tok: expected ids in [0, {self.vocab}), got {tok.tolist()}")
        return self.out
