"""`minrnn demo`: train a tiny minGRU/minLSTM character model on tiny-shakespeare for a time budget (CPU).

Prints the validation loss before and after (nats per character; a uniform guess is ln 65 = 4.17) and a
sample generated with the recurrent state, one character at a time.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from .models import ModelConfig, SequenceModel
from .paths import find_data


@torch.no_grad()
def _val_loss(model, data, T: int, n: int = 8, B: int = 16) -> float:
    model.eval()
    g = torch.Generator().manual_seed(123)
    losses = []
    for _ in range(n):
        ix = torch.randint(len(data) - T - 1, (B,), generator=g)
        x = torch.stack([data[i:i + T] for i in ix])
        y = torch.stack([data[i + 1:i + T + 1] for i in ix])
        logits, _ = model(x)
        losses.append(F.cross_entropy(logits.flatten(0, 1), y.flatten()).item())
    model.train()
    return sum(losses) / len(losses)


def run_demo(data_path=None, seconds: float = 60.0, cell: str = "mingru", seed: int = 0) -> int:
    torch.manual_seed(seed)
    text = find_data("tinyshakespeare/input.txt", data_path).read_text()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    train, val = data[:n], data[n:]
    cfg = ModelConfig(cell=cell, d_model=96, n_layers=2, expansion=2.0, vocab_size=len(chars))
    model = SequenceModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    T, B = 128, 32
    print(f"{cell} LM, {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{len(chars)} characters; training for {seconds:.0f} s on CPU")
    print(f"val loss before: {_val_loss(model, val, T):.3f} (uniform guess: {math.log(len(chars)):.3f})")
    t0, step = time.time(), 0
    while time.time() - t0 < seconds:
        ix = torch.randint(len(train) - T - 1, (B,))
        x = torch.stack([train[i:i + T] for i in ix])
        y = torch.stack([train[i + 1:i + T + 1] for i in ix])
        logits, _ = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"  step {step:5d}  train loss {loss.item():.3f}  ({time.time() - t0:.0f} s)", flush=True)
    print(f"val loss after {step} steps ({time.time() - t0:.0f} s): {_val_loss(model, val, T):.3f}")
    model.eval()
    with torch.no_grad():
        state, tok, out = model.init_state(1), torch.tensor([stoi["\n"]]), []
        for _ in range(300):
            logits, state = model.step(tok, state)
            tok = torch.multinomial(F.softmax(logits / 0.8, -1), 1)[:, 0]
            out.append(chars[tok.item()])
    print("sample:\n" + "".join(out))
    return 0
