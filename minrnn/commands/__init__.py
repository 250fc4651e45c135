"""Subcommands of the `minrnn` CLI, one module each (see `minrnn/cli.py`)."""
