"""The `minrnn` command. Each subcommand lives in `minrnn/commands/<name>.py` and defines
``register(subparsers)``, which adds its parser and sets ``func``; modules are imported only to build the
parser, and heavy imports happen inside the command functions.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minrnn", description="minGRU / minLSTM for PyTorch")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for m in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{m.name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except BrokenPipeError:  # `minrnn info | head`: the reader left; nothing to report
        sys.stderr.close()
        return 0
    except (ValueError, TypeError, RuntimeError, ImportError, OSError) as e:
        print(f"minrnn {args.command}: error: {error_text(e)}", file=sys.stderr)
        return 2


def error_text(e: BaseException) -> str:
    """One line for the user: our own messages as they are; an OS error as 'what: path'."""
    if isinstance(e, OSError) and e.strerror:  # raised by the OS: "[Errno 13] ..." reads better without the number
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e).strip() or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
