"""Where to find data that cannot be downloaded here: an explicit path, $MINRNN_DATA, or ../shared/data."""
from __future__ import annotations

import os
from pathlib import Path

from . import settings

_REPO = Path(__file__).resolve().parent.parent


def find_data(relpath: str, explicit: str | os.PathLike | None = None, kind: str = "file") -> Path:
    """Return the path of a data file (`kind="file"`) or folder (`kind="dir"`): `explicit` if given, else
    the first of $MINRNN_DATA/relpath, ./../shared/data/relpath and <repo>/../shared/data/relpath that
    exists. A MINRNN_DATA that is set but not a folder is an error (never a silent fall-back).
    Raises FileNotFoundError or ValueError."""
    want = Path.is_file if kind == "file" else Path.is_dir
    if explicit is not None:
        p = Path(explicit)
        if not p.exists():
            raise FileNotFoundError(f"data path: expected an existing {kind}, got {p} (missing)")
        if not want(p):
            raise ValueError(f"data path: expected a {kind}, got {'a folder' if p.is_dir() else 'a file'} {p}")
        return p
    env = settings.get("MINRNN_DATA")
    if env and not Path(env).is_dir():
        raise ValueError(f"MINRNN_DATA: expected a folder, got {env!r} (missing or not a folder)")
    roots = [env, Path.cwd() / ".." / "shared" / "data", _REPO / ".." / "shared" / "data"]
    tried = []
    for r in roots:
        if r:
            p = Path(r) / relpath
            tried.append(str(p))
            if want(p):
                return p.resolve()
    raise FileNotFoundError(f"{relpath}: not found in {tried}; pass its path explicitly or set MINRNN_DATA")
