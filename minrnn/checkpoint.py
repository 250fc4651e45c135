"""Run directories, atomic file writes, checkpoints and the metrics log of the training engine.

A checkpoint is one `torch.save`d dict (format `minrnn-ckpt/1`) with the model, optimiser, scheduler and
grad-scaler states, all RNG states, the data position (the step: batches are a pure function of it), the
early-stopping state and the resolved config. It is written to a temp file in the same folder and renamed
over the old one (`os.replace` is atomic), so a run killed mid-write keeps its previous checkpoint.
"""
from __future__ import annotations

import io
import json
import os
import random
import tempfile
import time
from pathlib import Path

import torch

FORMAT = "minrnn-ckpt/1"


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


def save_checkpoint(path: str | os.PathLike, ckpt: dict) -> None:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **ckpt}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and validate a checkpoint; a clear RuntimeError when it is missing, truncated or foreign."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: expected a file, got {path} (missing)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled foreign objects
        raise RuntimeError(f"checkpoint {path} is corrupted or not a minrnn checkpoint "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise RuntimeError(f"checkpoint {path}: expected format {FORMAT!r}, got {got!r}")
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


def make_run_dir(out_dir: str, task: str, model: str, seed: int, name: str = "") -> Path:
    """runs/<task>-<model>-s<seed>-<time> (or `name`); a suffix keeps two runs started the same second apart."""
    base = name or f"{task}-{model}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        p = Path(out_dir) / (base if i == 0 else f"{base}-{i}")
        try:
            p.mkdir()
            return p
        except FileExistsError:
            if name:
                raise FileExistsError(f"run_name: {p} exists; pick another name or --resume it") from None
    raise FileExistsError(f"could not create a run directory under {out_dir}")


class MetricsLog:
    """Append-only JSONL (one object per line, flushed) plus optional TensorBoard scalars."""

    def __init__(self, run_dir: Path, tensorboard: bool = False, keep_until_step: int | None = None):
        self.path = run_dir / "metrics.jsonl"
        if keep_until_step is not None and self.path.exists():  # resume: drop what the killed run logged later
            kept = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= keep_until_step]
            atomic_write_bytes(self.path, "".join(ln + "\n" for ln in kept).encode())
        self.f = open(self.path, "a")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("--tensorboard needs the tensorboard package: pip install 'minrnn[tb]'") from e
            self.tb = SummaryWriter(str(run_dir / "tb"))

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
    p = Path(run_dir) / "metrics.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"run directory: expected {p} to exist")
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
