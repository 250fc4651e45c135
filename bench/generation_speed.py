"""Generation speed (tokens/s, batch 1, 1 thread, temperature 0.8) of the Shakespeare cpu-preset models.

Rows, all measured in one process, interleaved (every row once per repeat, `--repeat` times; the table
shows the median, so the rows share the machine's load): minGRU/minLSTM with the compiled step
(`models/fast_step.py`, what `generate` uses) and with the PyTorch `SequenceModel.step` (`fast=False`);
the Transformer of the trained run (block 256: past 256 tokens it slides its window and re-reads 255
positions per token, nanoGPT-style) and a block-1024 Transformer of the same shape that keeps its KV cache
up to 512 tokens (fresh weights: speed does not depend on them; the ratios are against this faster one);
nn.GRU and nn.LSTM LMs. Models are the best checkpoints in `--runs` (runs/cmp/cpu-<arch>, written by
bench/shakespeare_compare.py) where present, else freshly initialised cpu-preset models.
"ctx 256-512" = 256 new tokens after a 256-character prompt, "ctx 1-256" = 255 after a 1-character prompt.
Usage: OMP_WAIT_POLICY=PASSIVE python bench/generation_speed.py [--runs runs/cmp] [--repeat 3]
Prints a markdown table and writes --json (default bench/out/generation_speed.json). ``--profile`` instead
splits one token's time (CPU time of 500 calls) into step and sampling, and profiles the PyTorch step's ops.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from minrnn.bench.run import write_json  # noqa: E402
from minrnn.models.baselines import make_model  # noqa: E402
from minrnn.models.generate import generate  # noqa: E402
from minrnn.tasks.shakespeare import _CPU_MODELS, CharVocab, load_corpus  # noqa: E402

BASE = "transformer, block 1024 (KV cache)"


def speed(model, prompt: torch.Tensor, n: int, fast: bool) -> tuple[float, float, str]:
    """Decode tokens/s of `n` tokens after `prompt` (by wall clock and by CPU time), after an 8-token
    warm-up (same settings as bench/shakespeare_compare.py's gen_speed), and the step that ran."""
    g = torch.Generator().manual_seed(0)
    generate(model, prompt, 8, 0.8, 0, g, fast=fast)
    _, t = generate(model, prompt, n, 0.8, 0, g, fast=fast)
    return t["tokens_per_s"], (n - 1) / max(t["decode_cpu_s"], 1e-9), t["step"]


def load_models(runs: Path, vocab_size: int) -> dict:
    """name -> (model, fast flag, source)."""
    from minrnn.train import load_run
    models = {}
    for arch in ("mingru", "minlstm", "transformer", "gru", "lstm"):
        rd = runs / f"cpu-{arch}"
        if (rd / "ckpt_best.pt").is_file():
            _, model, _ = load_run(rd, "best", overrides={"eval_windows": 0})
            src = f"{rd} (best)"
        else:
            torch.manual_seed(0)
            model = make_model(arch, vocab_size=vocab_size, block_size=256, **_CPU_MODELS[arch])
            src = "fresh cpu preset"
        model.eval()
        if arch in ("mingru", "minlstm"):
            models[f"{arch}, C step"] = (model, True, src)
            models[f"{arch}, PyTorch step"] = (model, False, src)
        elif arch == "transformer":
            models[f"transformer, block {model.block_size} (run)"] = (model, True, src)
            torch.manual_seed(0)
            models[BASE] = (make_model(arch, vocab_size=vocab_size, block_size=1024, **_CPU_MODELS[arch]).eval(),
                            True, "fresh cpu preset, block 1024")
        else:
            models[arch] = (model, True, src)
    return models


def profile(models: dict, n: int = 500) -> None:
    """Per-token CPU time of the PyTorch step, the C step and the sampler `_pick`; top ops of the PyTorch step."""
    from torch.profiler import profile as torch_profile

    from minrnn.models.fast_step import Decoder
    from minrnn.models.generate import _pick

    def cpu_us(f):
        f()
        t0 = time.process_time()
        for _ in range(n):
            f()
        return 1e6 * (time.process_time() - t0) / n

    g = torch.Generator().manual_seed(0)
    for cell in ("mingru", "minlstm"):
        model = models[f"{cell}, C step"][0]
        with torch.no_grad():
            logits, state = model(torch.zeros(1, 256, dtype=torch.int64))
            tok = torch.zeros(1, dtype=torch.int64)
            dec = Decoder(model, state, 1)
            py, c = cpu_us(lambda: model.step(tok, state)), cpu_us(lambda: dec(tok))
            pick = cpu_us(lambda: _pick(logits[:, -1], 0.8, 0, g))
            print(f"{cell}: CPU us per token: PyTorch step {py:.0f}, C step {c:.0f}, sampling (_pick) {pick:.0f}")
            with torch_profile() as prof:
                for _ in range(50):
                    model.step(tok, state)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs/cmp", help="folder with cpu-<arch> runs (fresh models if absent)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repeats; the median is reported")
    ap.add_argument("--tokens", type=int, default=256, help="new tokens per measurement")
    ap.add_argument("--json", default="bench/out/generation_speed.json", help="results JSON")
    ap.add_argument("--profile", action="store_true", help="per-token time split and op profile instead")
    args = ap.parse_args()
    if args.repeat < 1 or args.tokens < 2:
        raise ValueError(f"expected --repeat >= 1 and --tokens >= 2, got {args.repeat}, {args.tokens}")
    torch.set_num_threads(1)
    text, _ = load_corpus("")
    vocab = CharVocab(text)
    val = text[int(0.9 * len(text)):]
    models = load_models(Path(args.runs), len(vocab.chars))
    if args.profile:
        profile(models)
        return 0
    prompts = {"ctx 256-512": vocab.encode(val[:256]).unsqueeze(0), "ctx 1-256": vocab.encode(val[:1]).unsqueeze(0)}
    load0 = os.getloadavg()
    res = {name: {c: [] for c in prompts} for name in models}
    cpu = {name: {c: [] for c in prompts} for name in models}
    steps = {}
    for _ in range(args.repeat):
        for name, (model, fast, _) in models.items():
            for c, prompt in prompts.items():
                tps, cps, steps[name] = speed(model, prompt, args.tokens, fast)
                res[name][c].append(tps)
                cpu[name][c].append(cps)
    med = {name: {c: statistics.median(v) for c, v in r.items()} for name, r in res.items()}
    cmed = {name: {c: statistics.median(v) for c, v in r.items()} for name, r in cpu.items()}
    print(f"(median of {args.repeat}; x = vs {BASE}; 'by CPU time' = tokens per second of this process's CPU time)")
    print("| model | gen tok/s ctx 256-512 | gen tok/s ctx 1-256 | by CPU time ctx 256-512 | by CPU time ctx 1-256 |")
    print("|---|---|---|---|---|")
    for name in models:
        cells = [f"{d[name][c]:.0f} ({d[name][c] / d[BASE][c]:.1f}x)" for d in (med, cmed) for c in prompts]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for cell in ("mingru", "minlstm"):
        a, b = med[f"{cell}, C step"], med[f"{cell}, PyTorch step"]
        print(f"{cell}: C step / PyTorch step = " + ", ".join(f"{a[c] / b[c]:.1f}x ({c})" for c in prompts))
    load1 = os.getloadavg()
    print(f"load average before/after: {load0[0]:.1f} / {load1[0]:.1f}; steps: "
          + "; ".join(f"{n}: {s}" for n, s in steps.items() if "min" in n))
    meta = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "threads": 1, "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "loadavg_before_after": [load0[0], load1[0]], "allocator": "glibc malloc (default)",
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=ROOT).stdout.strip(), "tokens": args.tokens, "repeat": args.repeat}
    rows = [{"model": n, "source": models[n][2], "step": steps[n], "tok_s_all": res[n], "tok_s_median": med[n],
             "cpu_tok_s_all": cpu[n], "cpu_tok_s_median": cmed[n]} for n in models]
    write_json({"meta": meta, "rows": rows}, Path(args.json))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
