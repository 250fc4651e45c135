"""MinGRU and MinLSTM layers with a `torch.nn.GRU`-like contract.

Each layer computes all gate pre-activations of a sequence with one matmul (the gates see x_t only), turns
them into the coefficients of h_t = a_t h_{t-1} + b_t (`gates.py`) and runs a scan (`scan/`). Shapes:
  x (B, T, input_size) -> y (B, T, out_size), h_n (num_layers * num_directions, B, hidden_size)
where out_size is ``proj_size`` if set, else ``num_directions * hidden_size``. minLSTM has no cell state, so
both layers return a single ``h_n``. `step` advances one time step in O(1) memory.

Variable length: ``mask`` (B, T) bool, True at real positions (or ``lengths`` (B,)); at padded positions the
state is carried unchanged (a = 1, b = 0), so padding anywhere never touches the states of real positions,
``h_n`` is each sequence's last real state, and y is 0 there (after the projection too). Padded input values
are never read: NaN/inf there changes no output and no gradient. ``reset`` (B, T) bool restarts the state at
the marked steps from the layer's initial state (learned ``h0`` or zeros), as for episode boundaries in RL; a
reset on a padded step does nothing (padding wins: the state is carried through it unchanged).

Parameters: the gate weights are ``weight_ih_l{k}`` (n_gates * hidden, in) and ``bias_ih_l{k}`` (with suffix
``_reverse`` for the backward direction), named as in ``nn.GRU``; the projections are ``projs[k]``.
``scan_impl`` picks the backend (`scan/dispatch.py`); ``cpu_matmul`` says where the `cpu` backend runs the
matmuls (auto | off | always; default from MINRNN_KERNEL_MATMUL), a per-layer choice, never a global one.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import gates, settings
from .scan import check_name, select_backend
from .scan.cells import coeffs, linear_cell_scan


class _MinRNN(nn.Module):
    n_gates: int  # pre-activations per hidden unit; set by subclasses
    cell: str  # "mingru" | "minlstm"; set by subclasses
    normalize = False  # minLSTM gate normalisation; MinLSTM sets it per instance

    def __init__(self, input_size: int, hidden_size: int | None = None, *, expansion: float | None = None,
                 proj_size: int | None = None, num_layers: int = 1, bias: bool = True, dropout: float = 0.0,
                 bidirectional: bool = False, candidate: str = "g", learn_h0: bool = False,
                 scan_impl: str = "auto", cpu_matmul: str | None = None, device=None, dtype=None):
        super().__init__()
        _positive_int("input_size", input_size)
        if hidden_size is not None and expansion is not None:
            raise ValueError("give hidden_size or expansion, not both")
        if expansion is not None:
            if isinstance(expansion, bool) or not isinstance(expansion, (int, float)) or not expansion > 0 \
                    or not math.isfinite(expansion):
                raise ValueError(f"expansion: expected a finite number > 0, got {expansion!r}")
            hidden_size = int(round(expansion * input_size))
            proj_size = input_size if proj_size is None else proj_size  # the paper's blocks project back
        hidden_size = input_size if hidden_size is None else hidden_size
        _positive_int("hidden_size", hidden_size)
        _positive_int("num_layers", num_layers)
        if proj_size is not None:
            _positive_int("proj_size", proj_size)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a value in [0, 1), got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"dropout={dropout} has no effect with num_layers=1: it applies between layers "
                          "(as in nn.GRU)", UserWarning, stacklevel=3)
        if candidate not in gates.CANDIDATES:
            raise ValueError(f"candidate: expected one of {gates.CANDIDATES}, got {candidate!r}")
        scan_impl = check_name(scan_impl)
        cpu_matmul = settings.default_cpu_matmul() if cpu_matmul is None else cpu_matmul
        if cpu_matmul not in settings.MATMUL_MODES:
            raise ValueError(f"cpu_matmul: expected one of {settings.MATMUL_MODES}, got {cpu_matmul!r}")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype: expected a floating-point torch.dtype, got {dtype!r}")
        fk = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.proj_size = input_size, hidden_size, proj_size
        self.num_layers, self.bidirectional, self.dropout = num_layers, bidirectional, dropout
        self.num_directions = 2 if bidirectional else 1
        self.candidate, self.scan_impl, self.cpu_matmul = candidate, scan_impl, cpu_matmul
        self.out_size = proj_size or self.num_directions * hidden_size
        self.projs = nn.ModuleList()
        self._gate_names = []  # index layer * num_directions + direction -> (weight name, bias name or None)
        for layer in range(num_layers):
            in_l = input_size if layer == 0 else self.out_size
            for d in range(self.num_directions):
                suffix = f"l{layer}" + ("_reverse" if d else "")
                w = nn.Parameter(torch.empty(self.n_gates * hidden_size, in_l, **fk))
                b = nn.Parameter(torch.empty(self.n_gates * hidden_size, **fk)) if bias else None
                bound = 1.0 / math.sqrt(in_l)  # nn.Linear's default initialisation
                nn.init.uniform_(w, -bound, bound)
                if b is not None:
                    nn.init.uniform_(b, -bound, bound)
                self.register_parameter(f"weight_ih_{suffix}", w)
                self.register_parameter(f"bias_ih_{suffix}", b)
                self._gate_names.append((f"weight_ih_{suffix}", f"bias_ih_{suffix}" if bias else None))
            if proj_size is not None:
                self.projs.append(nn.Linear(self.num_directions * hidden_size, proj_size, bias=bias, **fk))
        n_states = num_layers * self.num_directions
        # a learned h0 starts at 0, except on the log-space scan, which needs h0 > 0: there it starts at
        # g(0) = 0.5, the positive candidate's value at a zero pre-activation
        h0_init = 0.5 if scan_impl == "logspace" else 0.0
        self.h0 = nn.Parameter(torch.full((n_states, hidden_size), h0_init, **fk)) if learn_h0 else None
        self.drop = nn.Dropout(dropout)

    def gate_params(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight (n_gates * H, in), bias or None) of cell i = layer * num_directions + direction."""
        w, b = self._gate_names[i]
        return getattr(self, w), (getattr(self, b) if b else None)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the gate weights were parameters (`cells.{i}.weight/bias`) still load
        for i, (w, b) in enumerate(self._gate_names):
            for old, new in ((f"{prefix}cells.{i}.weight", prefix + w), (f"{prefix}cells.{i}.bias", prefix + (b or ""))):
                if old in state_dict and new != prefix:
                    state_dict[new] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- public API ----
    def init_state(self, batch_size: int) -> torch.Tensor:
        """Initial state (num_layers * num_directions, B, hidden_size): the learned h0 or zeros."""
        _positive_int("batch_size", batch_size, allow_zero=True)
        p = self.gate_params(0)[0]
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
        backend = select_backend(self.scan_impl, x.device, _compute_dtype(x), empty=x.numel() == 0)
        h_default = self.init_state(B)
        finals = []
        inp = x if mask is None else x.masked_fill(~mask.unsqueeze(-1), 0.0)  # padding is never read
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                i = layer * self.num_directions + d
                start = None if h0 is None else h0[i]
                if d == 0:
                    h = self._recur(i, inp, start, h_default[i], mask, reset, backend)
                else:  # the backward direction runs on reversed time with its own weights
                    rr = None if reset is None else _reverse_reset(reset)
                    h = self._recur(i, inp.flip(1), start, h_default[i], _flip(mask), rr, backend).flip(1)
                finals.append(h[:, 0] if d == 1 else h[:, -1])
                outs.append(h)
            y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)  # (B, T, dirs * H)
            if self.proj_size is not None:
                y = self.projs[layer](y)
            if mask is not None:  # after the projection: its bias must not leak into padded positions
                y = y * mask.unsqueeze(-1).to(y.dtype)
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
            w, bias = self.gate_params(layer)
            a, b = coeffs(self.cell, F.linear(inp, w, bias), self.candidate, self.normalize)  # (B, H) each
            h_l = a * h[layer] + b
            new.append(h_l)
            inp = h_l if self.proj_size is None else self.projs[layer](h_l)
            if layer < self.num_layers - 1:
                inp = self.drop(inp)
        return inp, torch.stack(new, dim=0)

    # ---- internals ----
    def _recur(self, i, x, h0, h_default, mask, reset, backend) -> torch.Tensor:
        """States (B, T, H) of cell i on x (B, T, D_in), on `backend` (gate matmul included)."""
        if h0 is None and self.h0 is not None:
            h0 = h_default
        w, b = self.gate_params(i)
        return linear_cell_scan(self.cell, x, w, b, h0, candidate=self.candidate, normalize=self.normalize,
                                backend=backend, mask=mask, reset=reset,
                                h_reset=h_default if self.h0 is not None else None, cpu_matmul=self.cpu_matmul)

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
        p = self.gate_params(0)[0]
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


def _positive_int(name: str, v, allow_zero: bool = False) -> None:
    lo = 0 if allow_zero else 1
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name}: expected {'an int >= 0' if allow_zero else 'a positive int'}, got {v!r}")


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the gate pre-activations will have: the autocast dtype when autocast is on for x's device."""
    dev = x.device.type
    if dev in ("cpu", "cuda") and torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return x.dtype


def _build_mask(mask, lengths, B: int, T: int, device) -> torch.Tensor | None:
    if mask is not None and lengths is not None:
        raise ValueError("give mask or lengths, not both")
    if lengths is not None:
        if not isinstance(lengths, torch.Tensor):
            lengths = torch.as_tensor(lengths)
        if lengths.shape != (B,) or lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise ValueError(f"lengths: expected an integer tensor of shape ({B},), got {lengths.dtype} "
                             f"{tuple(lengths.shape)}")
        if lengths.device != torch.device(device) and lengths.device.type != "cpu":
            raise TypeError(f"lengths: expected a tensor on {device} (or the CPU), got one on {lengths.device}")
        # a value check reads the lengths; skipped while torch.compile traces (it would break the graph)
        if not torch.compiler.is_compiling() and (bool((lengths < 1).any()) or bool((lengths > T).any())):
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
