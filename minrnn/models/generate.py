"""Autoregressive token generation with a carried state, for every model of `minrnn.models`.

The prompt is read with one parallel forward (prefill) that returns the state; each new token then costs
one `step`: O(1) for minGRU/minLSTM (rnn state + conv window), nn.GRU/nn.LSTM and Mamba (SSM state + conv
inputs), O(context) for the Transformer (KV cache). Mamba's parallel forward (mambapy's) returns no state, so
its prompt is read step by step from `init_state` (as mambapy's own generate does). A Transformer's context is capped at its `block_size`: past it, generation slides
the window (re-reads the last block_size - 1 tokens without a cache, as nanoGPT does), which is slower.
minGRU/minLSTM models step through the compiled kernel of `fast_step.py` where it applies (CPU, fp32;
``fast=False`` or ``MINRNN_DISABLE_FAST_STEP=1`` turn it off); the other models always use their own `step`.
The timing dict's ``step`` says which step ran.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .baselines import Transformer
from .fast_step import STEP_KIND_NATIVE, Decoder


def _pick(logits: torch.Tensor, temperature: float, top_k: int, gen: torch.Generator | None) -> torch.Tensor:
    """logits (B, V) -> tokens (B,): argmax at temperature 0, else a sample (optionally from the top k)."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return _sample(F.softmax(logits, -1), gen)


def _sample(p: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """One draw per row of p (B, V): argmax(p / q) with q ~ Exp(1), the exponential race (Gumbel-max in
    exp form), an exact sample of the categorical p. It is what torch.multinomial(p, 1) computes on CPU,
    same generator draws included (tested: same tokens), without its ~10 extra validity ops per call
    (a third of a fast minRNN token's time)."""
    if not bool(torch.isfinite(p).all()):  # NaN/inf logits; multinomial raises there too
        raise ValueError("logits: expected finite values, got NaN or inf")
    q = torch.empty_like(p).exponential_(1, generator=gen)
    return (p / q).argmax(-1)


@torch.no_grad()
def generate(model, prompt: torch.Tensor, n: int, temperature: float = 1.0, top_k: int = 0,
             generator: torch.Generator | None = None, fast: bool = True) -> tuple[torch.Tensor, dict]:
    """prompt (B, P) int64 -> (new tokens (B, n), timing {prefill_s, decode_s, decode_cpu_s, tokens_per_s,
    step}). Timing counts the decode loop only (n tokens for each of the B sequences); decode_cpu_s is its
    CPU time (this process), which time waiting for a loaded core does not inflate. ``fast``: use the compiled
    minGRU/minLSTM step where it applies (same logits to fp32 rounding, same sampling)."""
    if prompt.dim() != 2 or prompt.dtype != torch.int64 or prompt.shape[1] < 1:
        raise ValueError(f"prompt: expected int64 tokens (B, P) with P >= 1, got {prompt.dtype} {tuple(prompt.shape)}")
    if n < 1 or temperature < 0 or top_k < 0:
        raise ValueError(f"expected n >= 1, temperature >= 0, top_k >= 0, got {n}, {temperature}, {top_k}")
    was_training = model.training
    model.eval()
    window = model.block_size if isinstance(model, Transformer) else None
    route = getattr(model, "step_route", None)  # the model decides how it decodes (SequenceModel)
    why = route(prompt.shape[0], fast) if route else f"{type(model).__name__} has no C step"
    kind = STEP_KIND_NATIVE if why is None else f"PyTorch step ({why})"
    t0 = time.perf_counter()
    ctx = prompt if window is None else prompt[:, -window:]
    # a model whose parallel forward keeps no state (Mamba via mambapy) reads the prompt step by step
    start = model.init_state(prompt.shape[0]) if getattr(model, "stateless_parallel", False) else None
    logits, state = model(ctx, start)
    t1, c1 = time.perf_counter(), time.process_time()
    tok = _pick(logits[:, -1], temperature, top_k, generator)
    out = [tok]
    if why is None:  # the compiled step, updating a private copy of the state in place
        dec = Decoder(model, state, prompt.shape[0])
        state = None
    hist = ctx
    for _ in range(n - 1):
        if window is not None and model.seen(state) >= window:  # slide: re-read the last window-1 tokens
            hist = torch.cat([hist, tok[:, None]], 1)[:, -window:]
            logits, state = model(hist)
            step_logits = logits[:, -1]
        else:
            if window is not None:
                hist = torch.cat([hist, tok[:, None]], 1)
            step_logits, state = (dec(tok), None) if why is None else model.step(tok, state)
        tok = _pick(step_logits, temperature, top_k, generator)
        out.append(tok)
    t2, c2 = time.perf_counter(), time.process_time()
    model.train(was_training)
    B = prompt.shape[0]
    return torch.stack(out, 1), {"prefill_s": t1 - t0, "decode_s": t2 - t1, "decode_cpu_s": c2 - c1,
                                 "tokens_per_s": B * (n - 1) / max(t2 - t1, 1e-9), "step": kind}
