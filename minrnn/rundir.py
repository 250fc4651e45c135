"""Run directories of the training engine: where they go, who may write them, and repair after a kill.

- `make_run_dir` creates `OUT_DIR/<name>`; the name is one path component, so a run never writes outside
  `--out-dir`.
- `RunLock` holds an exclusive lock (`flock` on RUN_DIR/.lock) while a process trains in the directory, so
  a second `--resume` of the same run fails at once instead of silently overwriting the first one's files.
  The kernel drops the lock when its process dies, even by kill -9.
- `clean_tmp` removes the temp files that a kill during an atomic write leaves behind.
- `repair_best` makes `ckpt_best.pt` agree with `ckpt_last.pt` after a kill between their two writes.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from . import checkpoint as ck

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are then not protected against a second writer
    fcntl = None


def check_run_name(name: str) -> None:
    """A run name is one plain path component: no separators, not '.' or '..', not absolute."""
    if name and (name in (".", "..") or "/" in name or "\\" in name or os.sep in name or Path(name).is_absolute()):
        raise ValueError(f"run_name: expected a plain folder name (no '/', not '.' or '..'), got {name!r}; "
                         "use --out-dir to choose where runs go")


def make_run_dir(out_dir: str, task: str, model: str, seed: int, name: str = "") -> Path:
    """OUT_DIR/<task>-<model>-s<seed>-<time> (or `name`); a suffix keeps two runs started the same second apart."""
    check_run_name(name)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir: expected a folder, got a file {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"out_dir: cannot create the folder ({e.strerror})", str(out)) from None
    base = name or f"{task}-{model}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    for i in range(1000):
        p = out / (base if i == 0 else f"{base}-{i}")
        try:
            p.mkdir()
            return p
        except FileExistsError:
            if name:
                raise FileExistsError(f"run_name: {p} exists; continue it with `minrnn train --resume {p}` "
                                      "or pick another --run-name") from None
        except OSError as e:
            raise OSError(e.errno, f"out_dir: cannot create a run directory ({e.strerror})", str(p)) from None
    raise FileExistsError(f"could not create a run directory under {out_dir}")


class RunLock:
    """Exclusive, non-blocking lock of a run directory for the life of this object (see the module doc)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / ".lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise RuntimeError(f"run directory {run_dir} is in use by another process (pid {holder}); wait for "
                               "it to finish or stop it before resuming") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def clean_tmp(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the `.NAME.*.tmp` files of interrupted atomic writes (call it while holding the RunLock)."""
    gone = []
    for p in Path(run_dir).glob(".*.tmp"):
        p.unlink(missing_ok=True)
        gone.append(p)
    return gone


def best_mismatch(run_dir: Path, last: dict) -> bool:
    """True when ckpt_last says the best evaluation is its own step but ckpt_best is missing, unreadable or
    of another step: the run was killed between writing the two (last is written first)."""
    state = last.get("state", {})
    if state.get("best") is None or state.get("best_step") != state.get("step"):
        return False
    try:
        return ck.load_checkpoint(run_dir / "ckpt_best.pt")["state"]["step"] != state["step"]
    except (OSError, RuntimeError, KeyError):
        return True


def best_from_last(task: str, last: dict) -> dict:
    """The ckpt_best content that belongs with `last` (the model of last's step)."""
    return {"task": task, "model": last["model"], "state": last["state"]}


def repair_best(run_dir: str | os.PathLike, last: dict) -> bool:
    """Rewrite ckpt_best.pt from ckpt_last.pt when they disagree (see best_mismatch); True if it did."""
    run_dir = Path(run_dir)
    if not best_mismatch(run_dir, last):
        return False
    ck.save_checkpoint(run_dir / "ckpt_best.pt", best_from_last(last["task"], last))
    print(f"note: {run_dir}/ckpt_best.pt was older than the best evaluation (step {last['state']['step']}) "
          "in ckpt_last.pt: rewritten from it", file=sys.stderr)
    return True
