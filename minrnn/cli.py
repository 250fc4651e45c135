"""The `minrnn` command: `minrnn info`, `minrnn demo`, ... (one subcommand per module in `commands`)."""
from __future__ import annotations

import argparse
import sys


def cmd_info(args) -> int:
    import platform

    import torch

    import minrnn
    from minrnn.scan import available_impls, resolve_impl
    from minrnn.scan import native
    print(f"minrnn {minrnn.__version__}  torch {torch.__version__}  python {platform.python_version()}")
    print(f"device: cpu ({torch.get_num_threads()} threads)" +
          (f", cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", cuda: not available"))
    print(f"scan implementations available: {', '.join(available_impls())}")
    if not native.available():
        print(f"  native unavailable: {native.unavailable_reason()}")
    print(f"active (auto) on cpu: {resolve_impl('auto', torch.device('cpu'))}")
    return 0


def cmd_demo(args) -> int:
    from minrnn.demo import run_demo
    return run_demo(args.data, seconds=args.seconds, cell=args.cell)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minrnn", description="minGRU / minLSTM for PyTorch")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("info", help="versions, scan implementations, device")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("demo", help="train a tiny minGRU character model on CPU for a short while")
    s.add_argument("--data", default=None, help="path to tiny-shakespeare input.txt (default: look in ../shared/data)")
    s.add_argument("--seconds", type=float, default=60.0, help="training time budget in seconds")
    s.add_argument("--cell", choices=["mingru", "minlstm"], default="mingru", help="recurrent cell")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"minrnn {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
