"""MinGRU and MinLSTM layers with a `torch.nn.GRU`-like contract.

Each layer computes all gate pre-activations of a sequence with one matmul (the gates see x_t only), turns
them into the coefficients of h_t = a_t h_{t-1} + b_t (`gates.py`) and runs a scan (`scan/`). Shapes:
  x (B, T, input_size) -> y (B, T, out_size), h_n (num_layers * num_directions, B, hidden_size)
where out_size is ``proj_size`` if set, else ``num_directions * hidden_size``. minLSTM has no cell state, so
both layers return a single ``h_n``. `step` advances one time step in O(1) memory.

Variable length: ``mask`` (B, T) bool, True at real positions (or ``lengths`` (B,)); at padded positions the
state is carried unchanged (a = 1, b = 0), so padding anywhere never touches the states of real positions,
``h_n`` is each sequence's last real state, and y is 0 there. ``reset`` (B, T) bool restarts the state at the
marked steps from the layer's initial state (learned ``h0`` or zeros), as for episode boundaries in RL.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from . import gates
from .scan import IMPLS, resolve_impl
from .scan.cells import cell_scan, coeffs, linear_cell_scan


class _MinRNN(nn.Module):
    n_gates: int  # pre-activations per hidden unit; set by subclasses
    cell: str  # "mingru" | "minlstm"; set by subclasses
    normalize = False  # minLSTM gate normalisation; MinLSTM sets it per instance

    def __init__(self, input_size: int, hidden_size: int | None = None, *, expansion: float | None = None,
                 proj_size: int | None = None, num_layers: int = 1, bias: bool = True, dropout: float = 0.0,
                 bidirectional: bool = False, candidate: str = "g", learn_h0: bool = False,
                 scan_impl: str = "auto", device=None, dtype=None):
        super().__init__()
        if not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"input_size: expected a positive int, got {input_size!r}")
        if hidden_size is not None and expansion is not None:
            raise ValueError("give hidden_size or expansion, not both")
        if expansion is not None:
            if expansion <= 0:
                raise ValueError(f"expansion: expected > 0, got {expansion}")
            hidden_size = int(round(expansion * input_size))
            proj_size = input_size if proj_size is None else proj_size  # the paper's blocks project back
        hidden_size = input_size if hidden_size is None else hidden_size
        for name, v in (("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if proj_size is not None and (not isinstance(proj_size, int) or proj_size < 1):
            raise ValueError(f"proj_size: expected a positive int or None, got {proj_size!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a value in [0, 1), got {dropout}")
        if candidate not in gates.CANDIDATES:
            raise ValueError(f"candidate: expected one of {gates.CANDIDATES}, got {candidate!r}")
        if scan_impl not in ("auto",) + IMPLS:
            raise ValueError(f"scan_impl: expected one of {('auto',) + IMPLS}, got {scan_impl!r}")
        fk = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.proj_size = input_size, hidden_size, proj_size
        self.num_layers, self.bidirectional, self.dropout = num_layers, bidirectional, dropout
        self.num_directions = 2 if bidirectional else 1
        self.candidate, self.scan_impl = candidate, scan_impl
        self.out_size = proj_size or self.num_directions * hidden_size
        self.cells = nn.ModuleList()  # index layer * num_directions + direction
        self.projs = nn.ModuleList()
        for layer in range(num_layers):
            in_l = input_size if layer == 0 else self.out_size
            for _ in range(self.num_directions):
                self.cells.append(nn.Linear(in_l, self.n_gates * hidden_size, bias=bias, **fk))
            if proj_size is not None:
                self.projs.append(nn.Linear(self.num_directions * hidden_size, proj_size, bias=bias, **fk))
        n_states = num_layers * self.num_directions
        self.h0 = nn.Parameter(torch.zeros(n_states, hidden_size, **fk)) if learn_h0 else None
        self.drop = nn.Dropout(dropout)

    # ---- public API ----
    def init_state(self, batch_size: int) -> torch.Tensor:
        """Initial state (num_layers * num_directions, B, hidden_size): the learned h0 or zeros."""
        p = self.cells[0].weight
        n = self.num_layers * self.num_directions
        if self.h0 is not None:
            return self.h0.unsqueeze(1).expand(n, batch_size, self.hidden_size)
        return torch.zeros(n, batch_size, self.hidden_size, dtype=p.dtype, device=p.device)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None, *, mask: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None,
                reset: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, input_size), h0 (num_layers * num_directions, B, hidden_size) -> (y, h_n)."""
        self._check_input(x, ndim=3)
        B, T, _ = x.shape
        if T == 0:
            raise ValueError("x: expected at least one time step, got T = 0")
        mask = _build_mask(mask, lengths, B, T, x.device)
        reset = _check_bool("reset", reset, B, T, x.device)
        h0 = self._check_state(h0, B, x)
        impl = resolve_impl(self.scan_impl, x.device)
        h_default = self.init_state(B)
        finals = []
        inp = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                i = layer * self.num_directions + d
                start = None if h0 is None else h0[i]
                if d == 0:
                    h = self._recur(i, inp, start, h_default[i], mask, reset, impl)
                else:  # the backward direction runs on reversed time with its own weights
                    rr = None if reset is None else _reverse_reset(reset)
                    h = self._recur(i, inp.flip(1), start, h_default[i], _flip(mask), rr, impl).flip(1)
                finals.append(h[:, 0] if d == 1 else h[:, -1])
                outs.append(h)
            y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)  # (B, T, dirs * H)
            if mask is not None:
                y = y * mask.unsqueeze(-1).to(y.dtype)
            if self.proj_size is not None:
                y = self.projs[layer](y)
            if layer < self.num_layers - 1:
                y = self.drop(y)
            inp = y
        return inp, torch.stack(finals, dim=0)

    def step(self, x_t: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: x_t (B, input_size), h (num_layers, B, hidden_size) -> (y_t, h)."""
        if self.bidirectional:
            raise RuntimeError("step() is undefined for a bidirectional layer: the backward direction needs "
                               "the future of the sequence")
        self._check_input(x_t, ndim=2)
        B = x_t.shape[0]
        h = self.init_state(B) if h is None else self._check_state(h, B, x_t)
        new, inp = [], x_t
        for layer in range(self.num_layers):
            a, b = coeffs(self.cell, self.cells[layer](inp), self.candidate, self.normalize)  # (B, H) each
            h_l = a * h[layer] + b
            new.append(h_l)
            inp = h_l if self.proj_size is None else self.projs[layer](h_l)
            if layer < self.num_layers - 1:
                inp = self.drop(inp)
        return inp, torch.stack(new, dim=0)

    # ---- internals ----
    def _recur(self, i, x, h0, h_default, mask, reset, impl) -> torch.Tensor:
        """States (B, T, H) of cell i on x (B, T, D_in); the gate matmul (cells[i]) is done by the scan route."""
        if h0 is None and self.h0 is not None:
            h0 = h_default
        kw = dict(candidate=self.candidate, normalize=self.normalize, impl=impl, mask=mask, reset=reset,
                  h_reset=h_default if self.h0 is not None else None)
        lin = self.cells[i]
        if type(lin) is nn.Linear and not (lin._forward_hooks or lin._forward_pre_hooks):
            return linear_cell_scan(self.cell, x, lin.weight, lin.bias, h0, **kw)  # may fuse matmul + scan
        return cell_scan(self.cell, lin(x), h0, **kw)  # (B, T, n_gates * H) from a replaced/hooked module

    def _check_input(self, x, ndim: int) -> None:
        name = "x" if ndim == 3 else "x_t"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
        shape = "(B, T, input_size)" if ndim == 3 else "(B, input_size)"
        if x.dim() != ndim or x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: expected shape {shape} with input_size={self.input_size}, "
                             f"got {tuple(x.shape)}")
        p = self.cells[0].weight
        if x.dtype != p.dtype or x.device != p.device:
            raise TypeError(f"{name}: expected dtype {p.dtype} on {p.device} (the layer's parameters), "
                            f"got {x.dtype} on {x.device}")

    def _check_state(self, h, B: int, x) -> torch.Tensor | None:
        if h is None:
            return None
        want = (self.num_layers * self.num_directions, B, self.hidden_size)
        if not isinstance(h, torch.Tensor) or tuple(h.shape) != want:
            got = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise ValueError(f"h0: expected shape {want} (num_layers * num_directions, B, hidden_size), got {got}")
        if h.dtype != x.dtype or h.device != x.device:
            raise TypeError(f"h0: expected dtype {x.dtype} on {x.device}, got {h.dtype} on {h.device}")
        return h

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, candidate={self.candidate!r}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s + f", scan_impl={self.scan_impl!r}"


class MinGRU(_MinRNN):
    """minGRU: z_t = sigmoid(W_z x_t), h_t = (1 - z_t) h_{t-1} + z_t c(W_h x_t). Parameters 2 d_h d_x (+ bias)."""
    n_gates = 2
    cell = "mingru"


class MinLSTM(_MinRNN):
    """minLSTM: h_t = f'_t h_{t-1} + i'_t c(W_h x_t), with f', i' the normalised input-only gates.

    There is no cell state and no output gate: like MinGRU it returns (y, h_n). ``normalize=False`` uses
    f_t and i_t unnormalised (the authors' code default); the paper's equations normalise (our default).
    Parameters 3 d_h d_x (+ bias).
    """
    n_gates = 3
    cell = "minlstm"

    def __init__(self, *args, normalize: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.normalize = normalize


def _build_mask(mask, lengths, B: int, T: int, device) -> torch.Tensor | None:
    if mask is not None and lengths is not None:
        raise ValueError("give mask or lengths, not both")
    if lengths is not None:
        if not isinstance(lengths, torch.Tensor):
            lengths = torch.as_tensor(lengths)
        if lengths.shape != (B,) or lengths.is_floating_point():
            raise ValueError(f"lengths: expected an integer tensor of shape ({B},), got {lengths.dtype} "
                             f"{tuple(lengths.shape)}")
        if bool((lengths < 1).any()) or bool((lengths > T).any()):
            raise ValueError(f"lengths: expected values in [1, {T}], got {lengths.tolist()}")
        return torch.arange(T, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)
    return _check_bool("mask", mask, B, T, device)


def _check_bool(name: str, m, B: int, T: int, device) -> torch.Tensor | None:
    if m is None:
        return None
    if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or tuple(m.shape) != (B, T):
        got = f"{m.dtype} {tuple(m.shape)}" if isinstance(m, torch.Tensor) else type(m).__name__
        raise ValueError(f"{name}: expected a bool tensor of shape ({B}, {T}), got {got}")
    if m.device != device:
        raise TypeError(f"{name}: expected device {device}, got {m.device}")
    return m


def _flip(m):
    return None if m is None else m.flip(1)


def _reverse_reset(reset: torch.Tensor) -> torch.Tensor:
    """Reset flags for reversed time: a segment starting at t ends at t-1, where reversed time restarts."""
    r = torch.zeros_like(reset)
    r[:, :-1] = reset[:, 1:]
    return r.flip(1)
