"""Generation speed (tokens/s, batch 1, 1 thread) of the Shakespeare cpu-preset models, untrained.

Speed does not depend on the weights, so this measures on freshly initialised models, one after another in
one process, with the same `gen_speed` as `bench/shakespeare_compare.py` (256 tokens after a 256-character
prompt, where the Transformer slides its window; and 256 after a 1-character prompt, inside its KV cache).
Usage: OMP_WAIT_POLICY=PASSIVE python bench/generation_speed.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shakespeare_compare import MODELS, gen_speed  # noqa: E402

from minrnn.models.baselines import make_model  # noqa: E402
from minrnn.tasks.shakespeare import _CPU_MODELS, CharVocab, load_corpus  # noqa: E402


def main() -> int:
    torch.set_num_threads(1)
    text, _ = load_corpus(None)
    vocab = CharVocab(text)
    val = text[int(0.9 * len(text)):]
    res = {}
    for arch in MODELS:
        torch.manual_seed(0)
        model = make_model(arch, vocab_size=len(vocab.chars), **_CPU_MODELS[arch]).eval()
        res[arch] = (gen_speed(model, vocab, val, 256, 256), gen_speed(model, vocab, val, 1, 256))
    tf = res["transformer"]
    print("| model | gen tok/s ctx 256-512 | gen tok/s ctx 1-256 |\n|---|---|---|")
    for arch, (x, y) in res.items():
        print(f"| {arch} | {x:.0f} ({x / tf[0]:.1f}x) | {y:.0f} ({y / tf[1]:.1f}x) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
