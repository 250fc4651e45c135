"""Linear-space scan in pure PyTorch, exact in fp32, with an analytic backward.

Forward (`chunked_forward`): time is cut into chunks of C steps. A loop of C vectorised steps computes, for
every chunk at once, the local states (started from zero) and the running product of the gates; a second loop
over the chunks carries the true state across chunk boundaries; one broadcast adds `prod(a) * carry` to every
local state. Only products of gates and sums appear (never a division or a log), so fp32 stays within a few
ulps of the fp64 reference whatever the gate values; the Python loop runs about 2*sqrt(T) times instead of T.

Backward (`LinearScanFn`): the adjoint of a linear recurrence is the same recurrence run backwards,
    g_t = dL/dh_t + a_{t+1} * g_{t+1},   dL/db_t = g_t,   dL/da_t = g_t * h_{t-1},   dL/dh0 = a_0 * g_0,
so backward reuses the forward kernel on time-reversed tensors and stores only a and h. Backward is built
from this same differentiable op, so double backward (create_graph=True) is exact too.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

ForwardKernel = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _chunk_size(T: int) -> int:
    return max(1, int(math.ceil(math.sqrt(T))))


@torch.no_grad()
def chunked_forward(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None,
                    chunk: int | None = None) -> torch.Tensor:
    """States h (B, T, D) of h_t = a_t * h_{t-1} + b_t; no autograd (see `LinearScanFn`)."""
    B, T, D = a.shape
    C = chunk or _chunk_size(T)
    n = -(-T // C)
    pad = n * C - T
    # Time-major chunks: (C, B, n, D); padding steps (a=1, b=0) leave the state unchanged.
    at = torch.nn.functional.pad(a, (0, 0, 0, pad), value=1.0).view(B, n, C, D).permute(2, 0, 1, 3).contiguous()
    bt = torch.nn.functional.pad(b, (0, 0, 0, pad)).view(B, n, C, D).permute(2, 0, 1, 3).contiguous()
    # In place: bt becomes the zero-started local states, at the running products of the gates.
    for t in range(1, C):
        bt[t].addcmul_(at[t], bt[t - 1])
        at[t].mul_(at[t - 1])
    # Carry the true state across chunks: state entering chunk j is carry[j].
    carry = torch.empty(n, B, D, dtype=a.dtype, device=a.device)
    prev = torch.zeros(B, D, dtype=a.dtype, device=a.device) if h0 is None else h0.detach()
    for j in range(n):
        carry[j] = prev
        prev = torch.addcmul(bt[C - 1, :, j], at[C - 1, :, j], prev)
    bt.addcmul_(at, carry.permute(1, 0, 2).unsqueeze(0))  # (C, B, n, D)
    h = bt.permute(1, 2, 0, 3).reshape(B, n * C, D)
    return h[:, :T] if pad else h


class LinearScanFn(torch.autograd.Function):
    """Autograd wrapper for any forward kernel of the linear recurrence."""

    @staticmethod
    def forward(ctx, a, b, h0, kernel: ForwardKernel):
        h = kernel(a, b, h0)
        ctx.kernel = kernel
        ctx.has_h0 = h0 is not None
        ctx.save_for_backward(a, h, h0 if h0 is not None else torch.empty(0))
        return h

    @staticmethod
    def backward(ctx, gh):
        a, h, h0 = ctx.saved_tensors
        if not ctx.has_h0:
            h0 = None
        # g_t = gh_t + a_{t+1} g_{t+1}: a forward scan over reversed time with gates shifted by one.
        a_next = torch.nn.functional.pad(a[:, 1:], (0, 0, 0, 1))
        # through LinearScanFn itself, so that with create_graph=True this backward is differentiable too
        g = LinearScanFn.apply(a_next.flip(1), gh.contiguous().flip(1), None, ctx.kernel).flip(1)
        da = db = dh0 = None
        if ctx.needs_input_grad[0]:
            h_prev = torch.cat([(h0 if h0 is not None else torch.zeros_like(h[:, 0])).unsqueeze(1), h[:, :-1]], 1)
            da = g * h_prev
        if ctx.needs_input_grad[1]:
            db = g
        if h0 is not None and ctx.needs_input_grad[2]:
            dh0 = a[:, 0] * g[:, 0]
        return da, db, dh0, None


def scan_chunked(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    return LinearScanFn.apply(a, b, h0, chunked_forward)
