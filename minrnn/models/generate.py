"""Autoregressive token generation with a carried state, for every model of `minrnn.models`.

The prompt is read with one parallel forward (prefill) that returns the state; each new token then costs
one `step`: O(1) for minGRU/minLSTM (rnn state + conv window) and nn.GRU/nn.LSTM, O(context) for the
Transformer (KV cache). A Transformer's context is capped at its `block_size`: past it, generation slides
the window (re-reads the last block_size - 1 tokens without a cache, as nanoGPT does), which is slower.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .baselines import Transformer


def _pick(logits: torch.Tensor, temperature: float, top_k: int, gen: torch.Generator | None) -> torch.Tensor:
    """logits (B, V) -> tokens (B,): argmax at temperature 0, else a sample (optionally from the top k)."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(F.softmax(logits, -1), 1, generator=gen)[:, 0]


@torch.no_grad()
def generate(model, prompt: torch.Tensor, n: int, temperature: float = 1.0, top_k: int = 0,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """prompt (B, P) int64 -> (new tokens (B, n), timing {prefill_s, decode_s, tokens_per_s}).
    Timing counts the decode loop only (n tokens for each of the B sequences)."""
    if prompt.dim() != 2 or prompt.dtype != torch.int64 or prompt.shape[1] < 1:
        raise ValueError(f"prompt: expected int64 tokens (B, P) with P >= 1, got {prompt.dtype} {tuple(prompt.shape)}")
    if n < 1 or temperature < 0 or top_k < 0:
        raise ValueError(f"expected n >= 1, temperature >= 0, top_k >= 0, got {n}, {temperature}, {top_k}")
    was_training = model.training
    model.eval()
    window = model.block_size if isinstance(model, Transformer) else None
    t0 = time.perf_counter()
    ctx = prompt if window is None else prompt[:, -window:]
    logits, state = model(ctx)
    t1 = time.perf_counter()
    tok = _pick(logits[:, -1], temperature, top_k, generator)
    out = [tok]
    hist = ctx
    for _ in range(n - 1):
        if window is not None and model.seen(state) >= window:  # slide: re-read the last window-1 tokens
            hist = torch.cat([hist, tok[:, None]], 1)[:, -window:]
            logits, state = model(hist)
            step_logits = logits[:, -1]
        else:
            if window is not None:
                hist = torch.cat([hist, tok[:, None]], 1)
            step_logits, state = model.step(tok, state)
        tok = _pick(step_logits, temperature, top_k, generator)
        out.append(tok)
    t2 = time.perf_counter()
    model.train(was_training)
    B = prompt.shape[0]
    return torch.stack(out, 1), {"prefill_s": t1 - t0, "decode_s": t2 - t1,
                                 "tokens_per_s": B * (n - 1) / max(t2 - t1, 1e-9)}
