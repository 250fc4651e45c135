"""`minrnn sample RUN_DIR --prompt TEXT --tokens N`: generate text from a language-model run with the
carried state (recurrent state for RNNs, KV cache for the Transformer) and print tokens/s."""
from __future__ import annotations


def run(args) -> int:
    import torch

    from minrnn.models.generate import generate
    from minrnn.train import load_run
    if args.tokens < 1 or args.temperature < 0 or args.top_k < 0:
        raise ValueError(f"expected --tokens >= 1, --temperature >= 0, --top-k >= 0, got {args.tokens}, "
                         f"{args.temperature}, {args.top_k}")
    if args.threads:
        torch.set_num_threads(args.threads)
    tk, model, saved = load_run(args.run_dir, args.ckpt, args.device, {"data": args.data} if args.data else None)
    vocab = getattr(tk, "vocab", None)
    if vocab is None:
        raise TypeError(f"sample: expected a text task with a vocabulary, got task {saved['task']!r}")
    prompt = vocab.encode(args.prompt or "\n").unsqueeze(0).to(args.device)
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    out, t = generate(model, prompt, args.tokens, args.temperature, args.top_k, gen)
    print((args.prompt or "") + vocab.decode(out[0].tolist()))
    print(f"\n[{saved['task_config']['model']}: {args.tokens} tokens after a {prompt.shape[1]}-token prompt, "
          f"decode {t['tokens_per_s']:.1f} tokens/s, prefill {t['prefill_s'] * 1e3:.1f} ms, "
          f"{torch.get_num_threads()} thread(s) on {args.device}; {t['step']}]")
    return 0


def register(sub) -> None:
    s = sub.add_parser("sample", help="generate text from a trained language-model run")
    s.add_argument("run_dir", help="run directory written by `minrnn train`")
    s.add_argument("--prompt", default="\n", help="text to start from (characters of the corpus)")
    s.add_argument("--tokens", type=int, default=500, help="tokens to generate")
    s.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0: greedy argmax)")
    s.add_argument("--top-k", type=int, default=0, help="sample from the k most likely tokens (0: all)")
    s.add_argument("--seed", type=int, default=0, help="sampling seed")
    s.add_argument("--ckpt", choices=["best", "last"], default="best", help="which checkpoint")
    s.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    s.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    s.add_argument("--data", default=None, help="path to the corpus, if not the one the run used")
    s.set_defaults(func=run)
