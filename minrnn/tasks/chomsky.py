"""The Chomsky-hierarchy tasks of the paper's v3 (Deletang et al. 2023 and the xLSTM additions).

Seven problems, each a rule over a random string of `S` symbols 0..S-1, answered after a query token:
  parity            bits; answer: number of 1s mod 2                                   (2 classes)
  even_pairs        bits; answer: number of unequal adjacent pairs mod 2 (= first != last) (2 classes)
  cycle_nav         moves 0 stay, 1 +1, 2 -1 on a 5-cycle from 0; answer: final position    (5 classes)
  bucket_sort       S=10 symbols, then L queries; answers: the string sorted, one per query (S classes)
  majority          S=63 symbols; answer: the most frequent one (ties: the smallest)       (S classes)
  majority_count    S=63 symbols; answer: how often the most frequent one occurs           (max length + 1)
  missing_duplicate S=9 symbols w, then the prefix w[:m] (m random in [0, L)), a query; answer: w[m]
Tokens: symbols 0..S-1, query S, pad S+1 (after the query of missing_duplicate, so that every example of a
length has the same shape; models are causal, so pads after the last answer change nothing). The model has
one table of max(S + 2, classes) entries for inputs and outputs; only the first `classes` outputs count.

Protocol (length generalisation): each training step draws one length uniformly from [train_min_len,
train_max_len] (1-40) for its whole batch; `val` is every training length, `test` the lengths test_min_len,
test_min_len + test_len_step, ..., test_max_len (40..256). Accuracy is per answer token within a length and
the reported `acc` is its mean over the lengths of the split. Examples are pure functions of (config, seed).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .answers import IGNORE, answer_counts, answer_loss, example_generator, logits_of
from .base import Task, TaskConfig, model_kwargs, step_generator


def _parity(g, L, S):
    w = torch.randint(0, 2, (L,), generator=g)
    return w, [int(w.sum()) % 2]


def _even_pairs(g, L, S):
    w = torch.randint(0, 2, (L,), generator=g)
    return w, [int((w[1:] != w[:-1]).sum()) % 2]


def _cycle_nav(g, L, S):
    w = torch.randint(0, 3, (L,), generator=g)
    moves = torch.tensor([0, 1, -1])[w]
    return w, [int(moves.sum()) % 5]


def _bucket_sort(g, L, S):
    w = torch.randint(0, S, (L,), generator=g)
    return w, w.sort().values.tolist()


def _majority(g, L, S):
    w = torch.randint(0, S, (L,), generator=g)
    return w, [int(torch.bincount(w, minlength=S).argmax())]  # argmax returns the first (smallest) on ties


def _majority_count(g, L, S):
    w = torch.randint(0, S, (L,), generator=g)
    return w, [int(torch.bincount(w, minlength=S).max())]


def _missing_duplicate(g, L, S):
    w = torch.randint(0, S, (L,), generator=g)
    m = int(torch.randint(0, L, (1,), generator=g))
    return torch.cat([w, w[:m]]), [int(w[m])]


# name -> (sampler, symbols S, classes (None: from the config))
PROBLEMS = {
    "parity": (_parity, 2, 2),
    "even_pairs": (_even_pairs, 2, 2),
    "cycle_nav": (_cycle_nav, 3, 5),
    "bucket_sort": (_bucket_sort, 10, None),
    "majority": (_majority, 63, None),
    "majority_count": (_majority_count, 63, None),
    "missing_duplicate": (_missing_duplicate, 9, None),
}


@dataclass
class ChomskyConfig(TaskConfig):
    """One Chomsky-hierarchy problem and its length-generalisation protocol."""
    problem: str = "parity"        # parity | even_pairs | cycle_nav | bucket_sort | majority | majority_count | missing_duplicate
    train_min_len: int = 1         # shortest training string
    train_max_len: int = 40        # longest training string (also the val lengths)
    test_min_len: int = 40         # shortest test string
    test_max_len: int = 256        # longest test string
    test_len_step: int = 8         # test lengths test_min_len, +step, ..., test_max_len
    n_val_per_len: int = 16        # validation examples per training length
    n_test_per_len: int = 32       # test examples per test length
    eval_batch: int = 256          # examples per forward pass in evaluation
    eval_seed: int = 0             # seed of the fixed validation and test sets

    def __post_init__(self):
        super().__post_init__()
        if self.problem not in PROBLEMS:
            raise ValueError(f"problem: expected one of {sorted(PROBLEMS)}, got {self.problem!r}")
        if not 1 <= self.train_min_len <= self.train_max_len:
            raise ValueError(f"train lengths: expected 1 <= train_min_len <= train_max_len, "
                             f"got {self.train_min_len}, {self.train_max_len}")
        if not 1 <= self.test_min_len <= self.test_max_len:
            raise ValueError(f"test lengths: expected 1 <= test_min_len <= test_max_len, "
                             f"got {self.test_min_len}, {self.test_max_len}")
        for name in ("test_len_step", "n_val_per_len", "n_test_per_len", "eval_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")


def n_symbols(cfg: ChomskyConfig) -> int:
    return PROBLEMS[cfg.problem][1]


def n_classes(cfg: ChomskyConfig) -> int:
    """Classes of the answer: fixed, S for the symbol-valued problems, max length + 1 for majority_count."""
    fixed = PROBLEMS[cfg.problem][2]
    if fixed is not None:
        return fixed
    if cfg.problem == "majority_count":
        return max(cfg.train_max_len, cfg.test_max_len) + 1
    return n_symbols(cfg)


def make_example(problem: str, length: int, g: torch.Generator):
    """One example -> (x (T,), y (T,)): the string, the query token(s), pads; y = IGNORE off answers."""
    if length < 1:
        raise ValueError(f"length: expected >= 1, got {length}")
    sampler, S, _ = PROBLEMS[problem]
    query, pad = S, S + 1
    seq, answers = sampler(g, length, S)
    k = len(answers)
    if problem == "missing_duplicate":  # (L + m) tokens, 1 query, (L - m) pads: always 2L + 1 long
        x = torch.full((2 * length + 1,), pad, dtype=torch.int64)
    else:
        x = torch.empty(length + k, dtype=torch.int64)
    n = seq.numel()
    x[:n] = seq
    x[n:n + k] = query
    y = torch.full_like(x, IGNORE)
    y[n:n + k] = torch.tensor(answers)
    return x, y


def make_examples(problem: str, length: int, seed: int, split: str, step: int, lo: int, hi: int):
    """Examples [lo, hi) of (split, step), all of one length -> (x (n, T), y (n, T))."""
    pairs = [make_example(problem, length, example_generator(seed, split, step, i)) for i in range(lo, hi)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def train_length(cfg: ChomskyConfig, seed: int, step: int) -> int:
    """The string length of training step `step` (one per step, uniform in [train_min_len, train_max_len])."""
    g = step_generator(seed, step, "length")
    return int(torch.randint(cfg.train_min_len, cfg.train_max_len + 1, (1,), generator=g))


def split_lengths(cfg: ChomskyConfig, split: str) -> list[int]:
    if split == "val":
        return list(range(cfg.train_min_len, cfg.train_max_len + 1))
    if split == "test":
        return list(range(cfg.test_min_len, cfg.test_max_len + 1, cfg.test_len_step))
    raise ValueError(f"split: expected 'val' or 'test', got {split!r}")


class Chomsky(Task):
    name = "chomsky"
    Config = ChomskyConfig
    eval_metric, eval_mode = "acc", "max"

    @classmethod
    def preset(cls, preset: str, model: str) -> dict:
        super().preset(preset, model)
        rnn = model in ("mingru", "minlstm")
        # minRNN blocks as in selective copying (no conv, no MLP: the recurrence must do the work)
        arch = dict(d_model=64, n_layers=3, expansion=4.0 if rnn else 2.0, conv_kernel=0, mlp_ratio=0.0 if rnn else 4.0)
        if model == "mamba":  # the Mamba paper's block (d_state 16, expand 2, conv 4), no MLP, D 80: 147,364
            # parameters vs minGRU's 149,956 (within 10%, tests/test_mamba.py; paper: D 168)
            arch = dict(d_model=80, n_layers=3, expansion=2.0, conv_kernel=4, mlp_ratio=0.0, d_state=16)
        if preset == "paper":  # our full budget; paper-facts.md records no Chomsky hyperparameters
            return dict(arch, d_model=168 if model == "mamba" else 128, steps=100_000, batch_size=128, lr=1e-3, min_lr=1e-5,
                        weight_decay=0.05, grad_clip=1.0, eval_every=2000, warmup_steps=1000,
                        n_val_per_len=32, n_test_per_len=64, test_len_step=1)
        return dict(arch, steps=2000, batch_size=64, lr=3e-3, min_lr=1e-4, weight_decay=0.05, grad_clip=1.0,
                    eval_every=250, warmup_steps=100, time_budget=600.0)

    def __init__(self, cfg: ChomskyConfig):
        super().__init__(cfg)
        self.n_classes = n_classes(cfg)
        self.vocab = max(n_symbols(cfg) + 2, self.n_classes)  # one table for inputs and outputs
        self._eval_sets: dict = {}

    def build_model(self) -> nn.Module:
        from ..models.baselines import make_model
        # the Transformer's learned positions need the longest input: 2L + 1 (bucket_sort 2L, missing_duplicate 2L + 1)
        longest = 2 * max(self.cfg.train_max_len, self.cfg.test_max_len) + 1
        return make_model(self.cfg.model, vocab_size=self.vocab, block_size=longest, **model_kwargs(self.cfg))

    def train_batch(self, step: int, seed: int, lo: int, hi: int):
        length = train_length(self.cfg, seed, step)
        return make_examples(self.cfg.problem, length, seed, "train", step, lo, hi)

    def loss(self, model: nn.Module, batch):
        x, y = batch
        logits = logits_of(model, x)
        loss = answer_loss(logits, y, self.n_classes)
        correct, total = answer_counts(logits.detach(), y, self.n_classes)
        return loss, {"acc": correct / total, "len": float(x.shape[1])}

    def eval_set(self, split: str) -> dict:
        """{length: (x, y)} of the split, fixed by cfg.eval_seed."""
        if split not in self._eval_sets:
            n = self.cfg.n_val_per_len if split == "val" else self.cfg.n_test_per_len
            self._eval_sets[split] = {L: make_examples(self.cfg.problem, L, self.cfg.eval_seed, f"{split}{L}",
                                                       0, 0, n) for L in split_lengths(self.cfg, split)}
        return self._eval_sets[split]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict:
        device = next(model.parameters()).device
        accs, losses = {}, []
        for L, (x, y) in self.eval_set(split).items():
            correct = total = 0
            for i in range(0, x.shape[0], self.cfg.eval_batch):
                xb, yb = x[i:i + self.cfg.eval_batch].to(device), y[i:i + self.cfg.eval_batch].to(device)
                logits = logits_of(model, xb)
                c, t = answer_counts(logits, yb, self.n_classes)
                correct, total = correct + c, total + t
                losses.append(float(answer_loss(logits, yb, self.n_classes)))
            accs[L] = correct / total
        lo, hi = min(accs), max(accs)
        return {"acc": sum(accs.values()) / len(accs), "loss": sum(losses) / len(losses),
                f"acc_len{lo}": accs[lo], f"acc_len{hi}": accs[hi]}


TASK = Chomsky
