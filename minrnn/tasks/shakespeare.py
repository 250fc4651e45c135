"""Character-level tiny-shakespeare (the paper's language-modelling experiment, nanoGPT's `shakespeare_char`).

65-character vocabulary (the sorted set of the corpus), nanoGPT's split: first 90% of characters train, last
10% validation. There is no separate test set; the paper's "test loss" is this validation split. Training
windows of `seq_len + 1` characters start at offsets that are a pure function of (seed, step, example);
evaluation is deterministic: the mean next-character loss (nats) over all non-overlapping windows of the split.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.baselines import make_model
from ..paths import find_data
from .base import Task, TaskConfig, example_ints, model_kwargs

SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


@dataclass
class ShakespeareConfig(TaskConfig):
    data: str = ""                 # path to tiny-shakespeare input.txt (default: ../shared/data, else download)
    seq_len: int = 256             # training context in characters (also the Transformer's block size)
    eval_windows: int = 0          # validation windows per evaluation (0: all non-overlapping windows)
    eval_batch_size: int = 64      # windows per evaluation forward pass

    def __post_init__(self):
        super().__post_init__()
        if self.seq_len < 1 or self.eval_windows < 0 or self.eval_batch_size < 1:
            raise ValueError(f"expected seq_len >= 1, eval_windows >= 0, eval_batch_size >= 1, got "
                             f"{self.seq_len}, {self.eval_windows}, {self.eval_batch_size}")


def _download(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(URL, timeout=20) as r:
            data = r.read()
    except OSError as e:
        raise FileNotFoundError(f"tiny-shakespeare: not found locally and the download from {URL} failed "
                                f"({e}); pass --data PATH to a copy of input.txt") from None
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise RuntimeError(f"tiny-shakespeare download: expected sha256 {SHA256}, got another file")
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return dest


def corpus_path(path: str = "") -> Path:
    """The corpus file: the given path, else $MINRNN_DATA or ../shared/data, else a cached download."""
    try:
        p = find_data("tinyshakespeare/input.txt", path or None)
    except FileNotFoundError:
        if path:
            raise
        cached = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "minrnn" / "tinyshakespeare.txt"
        p = cached if cached.is_file() else _download(cached)
    return p


def load_corpus(path: str = "") -> tuple[str, str]:
    """(text, sha256) of the corpus (see corpus_path)."""
    raw = corpus_path(path).read_bytes()
    try:
        return raw.decode("utf-8"), hashlib.sha256(raw).hexdigest()
    except UnicodeDecodeError as e:
        raise ValueError(f"data: expected a UTF-8 text file, got {corpus_path(path)} ({e.reason} at byte "
                         f"{e.start})") from None


class CharVocab:
    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    def encode(self, s: str) -> torch.Tensor:
        bad = sorted(set(s) - set(self.stoi))
        if bad:
            raise ValueError(f"text: expected characters of the corpus vocabulary, got unknown {bad[:10]}")
        codes = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32)  # one code point per character
        table = np.array([ord(c) for c in self.chars], dtype=np.uint32)  # sorted, like self.chars
        return torch.from_numpy(np.searchsorted(table, codes).astype(np.int64))

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


# The `cpu` preset: every model within 10% of minGRU's 464,769 parameters (checked by tests/test_shakespeare.py), sized so
# that a step takes a similar time on one core; `paper`: the paper's/nanoGPT's settings, for a GPU.
_CPU_MODELS = {
    "mingru": dict(d_model=128, n_layers=3, expansion=2.0, mlp_ratio=1.5, conv_kernel=4),
    "minlstm": dict(d_model=128, n_layers=3, expansion=1.5, mlp_ratio=1.5, conv_kernel=4),
    "transformer": dict(d_model=128, n_layers=2, n_heads=4, mlp_ratio=4.0),
    "gru": dict(d_model=128, n_layers=2, rnn_hidden=200),
    "lstm": dict(d_model=128, n_layers=2, rnn_hidden=172),
    # mambapy blocks (d_state 16, expand 2, conv 4, the Mamba paper's) in the minGRU block's place, MLP x1.0
    "mamba": dict(d_model=128, n_layers=3, expansion=2.0, mlp_ratio=1.0, conv_kernel=4, d_state=16),
}
_PAPER_MODELS = {
    "mingru": dict(d_model=384, n_layers=3, expansion=2.0, mlp_ratio=4.0, conv_kernel=4),
    "minlstm": dict(d_model=384, n_layers=3, expansion=2.0, mlp_ratio=4.0, conv_kernel=4),
    "transformer": dict(d_model=384, n_layers=6, n_heads=6, mlp_ratio=4.0),
    "gru": dict(d_model=384, n_layers=3, rnn_hidden=640),
    "lstm": dict(d_model=384, n_layers=3, rnn_hidden=560),
    "mamba": dict(d_model=384, n_layers=3, expansion=2.0, mlp_ratio=3.75, conv_kernel=4, d_state=16),
}


class ShakespeareTask(Task):
    name = "shakespeare"
    Config = ShakespeareConfig
    eval_metric, eval_mode, eval_split = "loss", "min", "val"

    @classmethod
    def preset(cls, preset: str, model: str) -> dict:
        super().preset(preset, model)
        if preset == "cpu":
            return {**_CPU_MODELS[model], "model": model, "dropout": 0.0, "seq_len": 256, "batch_size": 16,
                    "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 50, "weight_decay": 0.1, "steps": 2000,
                    "eval_every": 100, "eval_windows": 128, "time_budget": 900.0, "threads": 1}
        return {**_PAPER_MODELS[model], "model": model, "dropout": 0.2, "seq_len": 256, "batch_size": 64,
                "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 100, "weight_decay": 0.1, "beta2": 0.99,
                "steps": 5000, "eval_every": 250, "eval_windows": 0}

    def __init__(self, cfg: ShakespeareConfig):
        super().__init__(cfg)
        self.path = corpus_path(cfg.data)
        text, self.sha256 = load_corpus(str(self.path))
        self.vocab = CharVocab(text)
        data = self.vocab.encode(text)
        n = int(0.9 * len(data))
        self.splits = {"train": data[:n], "val": data[n:]}
        if len(self.splits["val"]) < cfg.seq_len + 1:
            raise ValueError(f"seq_len: expected <= {len(self.splits['val']) - 1} (validation length), "
                             f"got {cfg.seq_len}")

    def data_fingerprint(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256}

    def build_model(self):
        return make_model(self.cfg.model, vocab_size=len(self.vocab.chars), block_size=self.cfg.seq_len,
                          **model_kwargs(self.cfg))

    def train_batch(self, step: int, seed: int, lo: int, hi: int):
        data, T = self.splits["train"], self.cfg.seq_len
        ix = example_ints(seed, step, lo, hi, len(data) - T)
        w = torch.stack([data[i:i + T + 1] for i in ix.tolist()])  # (b, T+1)
        return w[:, :-1], w[:, 1:]

    def loss(self, model, batch):
        x, y = batch
        logits, _ = model(x)  # (b, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten()), {}

    def windows(self, split: str) -> torch.Tensor:
        """The evaluation windows (n, T+1) of `split`: non-overlapping; `eval_windows` evenly spaced ones if set."""
        if split not in self.splits:
            raise ValueError(f"split: expected 'train' or 'val' (tiny-shakespeare has no test split), got {split!r}")
        data, T = self.splits[split], self.cfg.seq_len
        n = (len(data) - 1) // T
        w = torch.stack([data[i * T:i * T + T + 1] for i in range(n)])
        if self.cfg.eval_windows and self.cfg.eval_windows < n:
            w = w[torch.linspace(0, n - 1, self.cfg.eval_windows).round().long()]
        return w

    @torch.no_grad()
    def evaluate(self, model, split: str) -> dict:
        w = self.windows(split)
        dev = next(model.parameters()).device
        total, count = 0.0, 0
        for i in range(0, len(w), self.cfg.eval_batch_size):
            b = w[i:i + self.cfg.eval_batch_size].to(dev)
            logits, _ = model(b[:, :-1])
            total += F.cross_entropy(logits.flatten(0, 1).float(), b[:, 1:].flatten(), reduction="sum").item()
            count += b[:, 1:].numel()
        loss = total / count
        return {"loss": loss, "bpc": loss / 0.6931471805599453}


TASK = ShakespeareTask
