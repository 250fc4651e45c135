"""Run directories, atomic file writes, checkpoints and the metrics log of the training engine.

A checkpoint is one `torch.save`d dict (format `minrnn-ckpt/1`) with the model, optimiser, scheduler and
grad-scaler states, all RNG states, the data position (the step: batches are a pure function of it), the
early-stopping state and the resolved config, and a sha256 of that content, checked on load (a flipped
byte or NaN weights are an error, never a silent resume). It is written to a temp file in the same folder
and renamed over the old one (`os.replace` is atomic), so a run killed mid-write keeps its previous
checkpoint; the temp files such a kill leaves are removed when the run directory is next opened.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from .extras import require

FORMAT = "minrnn-ckpt/2"  # /2: with a content checksum
OLD_FORMATS = ("minrnn-ckpt/1",)  # still read, without a checksum to verify


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _digest(obj, h) -> None:
    """Feed every tensor (dtype, shape, bytes) and every other leaf (repr) of a nested checkpoint into `h`."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            h.update(f"K{k!r}".encode())
            _digest(v, h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _digest(v, h)
    else:
        h.update(f"V{obj!r}".encode())


def checksum(ckpt: dict) -> str:
    """sha256 over a checkpoint's content (every tensor's bytes), without its format and checksum keys."""
    h = hashlib.sha256()
    _digest({k: v for k, v in ckpt.items() if k not in ("format", "checksum")}, h)
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, ckpt: dict) -> None:
    """Write `ckpt` atomically, with a checksum of its content that `load_checkpoint` verifies."""
    ckpt = {k: v for k, v in ckpt.items() if k not in ("format", "checksum")}
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **ckpt, "checksum": checksum(ckpt)}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else "no message"


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and validate a checkpoint: a clear RuntimeError when it is missing, empty, truncated, foreign,
    altered after it was written (checksum) or holds non-finite model weights."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: expected a file, got {path} (missing)")
    if path.stat().st_size == 0:
        raise RuntimeError(f"checkpoint {path} is empty (0 bytes): it was cut off while being written")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled foreign objects
        raise RuntimeError(f"checkpoint {path} is corrupted or not a minrnn checkpoint "
                           f"({type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (FORMAT, *OLD_FORMATS):
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise RuntimeError(f"checkpoint {path}: expected format {FORMAT!r}, got {got!r}")
    if ckpt["format"] == FORMAT and ckpt.get("checksum") != checksum(ckpt):
        raise RuntimeError(f"checkpoint {path} is corrupted: its content does not match the checksum "
                           "written with it")
    bad = [k for k, v in ckpt.get("model", {}).items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise RuntimeError(f"checkpoint {path}: expected finite model weights, got NaN/inf in {bad[:5]}")
    return ckpt


def load_model_state(model: torch.nn.Module, state: dict, where: str) -> None:
    """load_state_dict with an error that says which keys/shapes disagree with the config."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        parts = [f"missing {missing[:5]}" if missing else "", f"unexpected {extra[:5]}" if extra else "",
                 f"shape mismatch {shapes[:5]}" if shapes else ""]
        raise ValueError(f"checkpoint {where} does not match the model built from its config: "
                         + "; ".join(p for p in parts if p))
    model.load_state_dict(state)


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _parse_metrics(path: Path) -> tuple[list[dict], list[int], int]:
    """(records, 1-based numbers of the lines that are not JSON objects, number of the last non-blank line)."""
    recs, bad, last = [], [], 0
    for i, ln in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not ln.strip():
            continue
        last = i
        try:
            r = json.loads(ln)
        except json.JSONDecodeError:
            r = None
        if isinstance(r, dict):
            recs.append(r)
        else:
            bad.append(i)
    return recs, bad, last


class MetricsLog:
    """Append-only JSONL (one object per line, flushed) plus optional TensorBoard scalars.

    On resume (`keep_until_step` given) the lines the killed run wrote after its checkpoint are dropped, and
    so are lines a kill or a full disk left torn (said on stderr), so the resumed log reads like one run."""

    def __init__(self, run_dir: Path, tensorboard: bool = False, keep_until_step: int | None = None):
        self.path = run_dir / "metrics.jsonl"
        if keep_until_step is not None and self.path.exists():
            recs, bad, _ = _parse_metrics(self.path)
            if bad:
                print(f"note: {self.path}: dropped {len(bad)} torn line(s) (line {', '.join(map(str, bad[:5]))})",
                      file=sys.stderr)
            kept = [r for r in recs if r.get("step", 0) <= keep_until_step]
            atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self.tb = None
        if tensorboard:
            writer = require("torch.utils.tensorboard", "tb", "--tensorboard", "tensorboard").SummaryWriter
            self.tb = writer(str(run_dir / "tb"))
        self.f = open(self.path, "a")

    def write(self, record: dict) -> None:
        self.f.write(json.dumps(record) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step",):
                    self.tb.add_scalar(f"{record['kind']}/{k}", v, record["step"])

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The records of RUN_DIR/metrics.jsonl. A torn last line (a kill or full disk mid-write) is skipped with
    a note; a corrupted line before it is an error naming the file and line."""
    p = Path(run_dir) / "metrics.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"run directory: expected {p} to exist")
    recs, bad, last = _parse_metrics(p)
    if bad and bad != [last]:
        raise ValueError(f"{p}: line {bad[0]} is not a JSON object (the file is corrupted)")
    if bad:
        print(f"note: {p}: skipped its torn last line {last}", file=sys.stderr)
    return recs
