"""Where to find data that cannot be downloaded here: an explicit path, $MINRNN_DATA, or ../shared/data."""
from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def find_data(relpath: str, explicit: str | os.PathLike | None = None) -> Path:
    """Return the path of a data file: `explicit` if given, else the first of $MINRNN_DATA/relpath,
    ./../shared/data/relpath and <repo>/../shared/data/relpath that exists. Raises FileNotFoundError."""
    if explicit is not None:
        p = Path(explicit)
        if not p.exists():
            raise FileNotFoundError(f"data path: expected an existing file, got {p}")
        return p
    roots = [os.environ.get("MINRNN_DATA"), Path.cwd() / ".." / "shared" / "data", _REPO / ".." / "shared" / "data"]
    tried = []
    for r in roots:
        if r:
            p = Path(r) / relpath
            tried.append(str(p))
            if p.exists():
                return p.resolve()
    raise FileNotFoundError(f"{relpath}: not found in {tried}; pass its path explicitly or set MINRNN_DATA")
