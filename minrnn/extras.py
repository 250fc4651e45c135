"""Optional dependencies: one place that imports them and says, in one line, which extra installs them.

`require("h5py", "rl", "reading hdf5 datasets")` returns the module or raises `MissingExtra` (an
ImportError) whose message is the whole story: what needs the module, and the command that installs it. The
CLI prints that message as `minrnn CMD: error: ...` (exit 2) instead of a traceback.
"""
from __future__ import annotations

import importlib


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the feature, module and install command."""


def hint(extra: str, package: str | None = None) -> str:
    alt = f" (or pip install {package})" if package else ""
    return f"pip install 'minrnn[{extra}]'{alt}"


def require(module: str, extra: str, feature: str, package: str | None = None):
    """Import `module` (e.g. "h5py", "matplotlib.pyplot") or raise MissingExtra naming `feature` and `extra`."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        raise MissingExtra(f"{feature} needs the {module.split('.')[0]} package (missing: {missing}): "
                           f"{hint(extra, package)}") from None
