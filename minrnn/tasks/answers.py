"""Answer-position classification: the loss and accuracy shared by selective copying and the Chomsky tasks.

A batch of these tasks is ``(x, y)``: input tokens ``x`` (B, T) and targets ``y`` (B, T) that hold a class at
every *answer* position and ``IGNORE`` everywhere else. The model maps x to logits (B, T, V); only the first
``n_classes`` of the V outputs are classes (a task may share one table between a larger input vocabulary
and fewer classes). Loss and accuracy are taken over answer positions only; every example of a task has the
same number of answers, so the mean over answers of a batch is also the mean over its examples.

The class-axis trap: ``F.cross_entropy`` reads axis 1 as the class axis, so logits of the answers shaped
(B, K, C) with targets (B, K) raise no error when K == C (16 answers, 16 classes in selective copying) and
silently train the wrong thing. Here logits are always flattened to (N, C) against (N,) targets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import step_generator

IGNORE = -100  # target value at positions that are not answers (also F.cross_entropy's ignore_index)


def _check(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> None:
    if not isinstance(logits, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"expected tensors, got {type(logits).__name__} and {type(y).__name__}")
    if y.dtype != torch.int64:
        raise TypeError(f"targets: expected int64, got {y.dtype}")
    if logits.dim() != y.dim() + 1 or logits.shape[:-1] != y.shape:
        raise ValueError(f"logits: expected shape {tuple(y.shape)} + (V,) to match targets {tuple(y.shape)}, "
                         f"got {tuple(logits.shape)}")
    if logits.shape[-1] < n_classes:
        raise ValueError(f"logits: expected at least n_classes={n_classes} outputs, got {logits.shape[-1]}")
    ans = y[y != IGNORE]
    if ans.numel() and (int(ans.min()) < 0 or int(ans.max()) >= n_classes):
        raise ValueError(f"targets: expected classes in [0, {n_classes}), got [{int(ans.min())}, {int(ans.max())}]")


def answer_loss(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mean cross-entropy over answer positions. logits (..., V) with V >= n_classes, y (...) int64."""
    _check(logits, y, n_classes)
    flat = logits[..., :n_classes].reshape(-1, n_classes)  # (N, C): the class axis is explicit
    return F.cross_entropy(flat.float(), y.reshape(-1), ignore_index=IGNORE)


@torch.no_grad()
def answer_counts(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> tuple[int, int]:
    """(correct answers, answers): argmax over the first n_classes outputs at answer positions."""
    _check(logits, y, n_classes)
    keep = y != IGNORE
    pred = logits[..., :n_classes].argmax(-1)
    return int((pred[keep] == y[keep]).sum()), int(keep.sum())


def answer_accuracy(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
    """Accuracy per answer token (a fraction in [0, 1])."""
    correct, total = answer_counts(logits, y, n_classes)
    if total == 0:
        raise ValueError("targets: expected at least one answer position, got none")
    return correct / total


def example_generator(seed: int, split: str, step: int, index: int) -> torch.Generator:
    """The generator of one example: a pure function of (seed, split, step, index), so any slice [lo, hi)
    of a batch holds the same examples however the batch is cut."""
    return step_generator(seed, step, f"{split}/{index}")


def logits_of(model, x: torch.Tensor) -> torch.Tensor:
    """Logits of a model that returns (out, state) (every minrnn model) or just out."""
    out = model(x)
    return out[0] if isinstance(out, tuple) else out
