"""Shakespeare `cpu`-preset comparison: minGRU, minLSTM, Transformer, GRU, LSTM at equal parameters and an
equal training-time budget, one model at a time, then full validation loss, generation speed and a plot.

    OMP_WAIT_POLICY=PASSIVE python bench/shakespeare_compare.py --budget 900 --out-dir runs/cmp

Prints a markdown table and writes bench/out/shakespeare_cpu.json and the loss-curve PNG (--png).
Generation tokens/s (batch 1, 1 thread, temperature 0.8): "ctx 256-512" = 256 new tokens after a 256-char
prompt (the Transformer, block 256, slides its window: every token re-reads 255 positions, nanoGPT-style);
"ctx 1-256" = 255 new tokens after a 1-char prompt (the Transformer's KV cache stays within its block).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODELS = ("mingru", "minlstm", "transformer", "gru", "lstm")


def gen_speed(model, vocab, text: str, prompt_len: int, n: int) -> float:
    from minrnn.models.generate import generate
    prompt = vocab.encode(text[:prompt_len]).unsqueeze(0)
    g = torch.Generator().manual_seed(0)
    generate(model, prompt, 8, 0.8, 0, g)  # warm-up
    _, t = generate(model, prompt, n, 0.8, 0, g)
    return t["tokens_per_s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=900.0, help="training seconds per model")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated architectures")
    ap.add_argument("--out-dir", default="runs/cmp", help="parent of the run directories")
    ap.add_argument("--json", default="bench/out/shakespeare_cpu.json", help="results JSON")
    ap.add_argument("--png", default="docs/img/shakespeare_cpu_loss.png", help="loss-curve plot")
    ap.add_argument("--skip-train", action="store_true", help="reuse existing runs in --out-dir")
    args = ap.parse_args()
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")
    models = args.models.split(",")
    for m in models:
        rd = Path(args.out_dir) / f"cpu-{m}"
        if args.skip_train and (rd / "summary.json").is_file():
            continue
        cmd = [sys.executable, "-m", "minrnn.cli", "train", "shakespeare", "--preset", "cpu", "--model", m,
               "--time-budget", str(args.budget), "--out-dir", args.out_dir, "--run-name", f"cpu-{m}",
               "--no-progress"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    from minrnn.commands.plot import plot_runs
    from minrnn.train import load_run
    torch.set_num_threads(1)
    rows = []
    for m in models:
        rd = Path(args.out_dir) / f"cpu-{m}"
        s = json.loads((rd / "summary.json").read_text())
        recs = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
        tr = [r for r in recs if r["kind"] == "train"]
        tk, model, saved = load_run(rd, "best", overrides={"eval_windows": 0})
        with torch.no_grad():
            full = tk.evaluate(model, "val")["loss"]
        val_text = tk.vocab.decode(tk.splits["val"][:300].tolist())
        rows.append({"model": m, "params": s["params"], "steps": s["steps"], "train_s": s["train_time"],
                     "step_ms": 1e3 * s["train_time"] / s["steps"],
                     "train_tok_s": sum(r["tokens_per_s"] * r["step_time"] for r in tr) / sum(
                         r["step_time"] for r in tr),
                     "best_step": s["best_step"], "val_loss_subset": s["best_val_loss"], "val_loss_full": full,
                     "gen_tok_s_ctx256_512": gen_speed(model, tk.vocab, val_text, 256, 256),
                     "gen_tok_s_ctx1_256": gen_speed(model, tk.vocab, val_text, 1, 256)})
        print(json.dumps(rows[-1]), flush=True)
    tf = next((r for r in rows if r["model"] == "transformer"), None)
    print("\n| model | params | steps | train s | ms/step | train tok/s | best val loss (128 windows) "
          "| val loss (full split) | gen tok/s ctx 256-512 | gen tok/s ctx 1-256 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        x = f" ({r['gen_tok_s_ctx256_512'] / tf['gen_tok_s_ctx256_512']:.1f}x)" if tf else ""
        y = f" ({r['gen_tok_s_ctx1_256'] / tf['gen_tok_s_ctx1_256']:.1f}x)" if tf else ""
        print(f"| {r['model']} | {r['params']:,} | {r['steps']} | {r['train_s']:.0f} | {r['step_ms']:.0f} | "
              f"{r['train_tok_s']:.0f} | {r['val_loss_subset']:.4f} | {r['val_loss_full']:.4f} | "
              f"{r['gen_tok_s_ctx256_512']:.0f}{x} | {r['gen_tok_s_ctx1_256']:.0f}{y} |")
    meta = {"budget_s": args.budget, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "threads": 1, "time": time.ctime(),
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=ROOT).stdout.strip()}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    plot_runs([str(Path(args.out_dir) / f"cpu-{m}") for m in models], args.png,
              title=f"tiny-shakespeare, cpu preset, {args.budget:.0f} s per model, 1 thread (faint: train loss)")
    print(f"wrote {args.json} and {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
