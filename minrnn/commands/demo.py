"""`minrnn demo`: a short CPU training run of a tiny character model (see `minrnn/demo.py`)."""
from __future__ import annotations


def run(args) -> int:
    from minrnn.demo import run_demo
    if args.seconds <= 0:
        raise ValueError(f"--seconds: expected > 0, got {args.seconds}")
    return run_demo(args.data, seconds=args.seconds, cell=args.cell)


def register(sub) -> None:
    s = sub.add_parser("demo", help="train a tiny minGRU character model on CPU for a short while")
    s.add_argument("--data", default=None, help="path to tiny-shakespeare input.txt (default: ../shared/data)")
    s.add_argument("--seconds", type=float, default=60.0, help="training time budget in seconds")
    s.add_argument("--cell", choices=["mingru", "minlstm"], default="mingru", help="recurrent cell")
    s.set_defaults(func=run)
