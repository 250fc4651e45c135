"""The training engine: one loop for every task (`minrnn train <task>`; tasks in `minrnn/tasks/`).

AdamW (weight decay on matrices only), linear warm-up + cosine decay, gradient clipping and accumulation,
evaluation every `eval_every` steps with early stopping, atomic checkpoints (`checkpoint.py`) with exact
resume, CPU/GPU with bf16/fp16 autocast, optional torch.compile, DDP under `torchrun` (rank 0 writes).

Exactness: batches are a pure function of (config, seed, step, slice) (see `tasks/base.py`), evaluation
runs under a forked RNG, and checkpoints carry every rank's RNG state, so a run resumed from the checkpoint
of step k replays steps k+1.. bit for bit, and W processes train on exactly the global batch of one.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist

from . import checkpoint as ck
from .extras import require
from .rundir import RunLock, best_from_last, best_mismatch, clean_tmp, make_run_dir, repair_best
from .tasks.base import to_device
from .train_config import RESUMABLE, TrainConfig, lr_factor, make_optimizer, resolve_config  # noqa: F401


def _setup_dist(cfg: TrainConfig):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device == "auto":
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device: expected a visible GPU for 'cuda', got none")
        if device.type == "cuda" and device.index is None:
            device = torch.device(f"cuda:{local}")
    if cfg.amp != "none" and device.type != "cuda":
        raise ValueError(f"amp: expected 'none' on {device.type} (autocast is for GPUs), got {cfg.amp!r}")
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _load_resume(run_dir: str, overrides: dict | None):
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"--resume: expected a run directory with config.json, got {run_dir}")
    try:
        saved = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--resume: {cfg_path} is not valid JSON ({e})") from None
    bad = sorted(set(overrides or {}) - set(RESUMABLE))
    if bad:
        raise ValueError(f"--resume: fields {bad} cannot change in a resumed run (only {list(RESUMABLE)})")
    train_vals = {**saved["train_config"], **(overrides or {})}
    task_cls, task_cfg, train_cfg = resolve_config(saved["task"], None, {**saved["task_config"], **train_vals})
    if not (run_dir / "ckpt_last.pt").exists():  # killed before its first checkpoint: start it over
        print(f"note: {run_dir} has no checkpoint yet (the run stopped before its first one): starting it "
              "from step 0", file=sys.stderr)
        return run_dir, saved, task_cls, task_cfg, train_cfg, None
    ckpt = ck.load_checkpoint(run_dir / "ckpt_last.pt")
    if ckpt.get("task") != saved["task"]:
        raise ValueError(f"checkpoint task: expected {saved['task']!r} (config.json), got {ckpt.get('task')!r}")
    return run_dir, saved, task_cls, task_cfg, train_cfg, ckpt


def _check_data(saved: dict, now: dict | None, run_dir: Path) -> None:
    """A resumed run must read the data it started with (the fingerprint config.json recorded)."""
    was = saved.get("data")
    if was is not None and now is not None and was.get("sha256") != now.get("sha256"):
        raise ValueError(f"--resume: the data changed since {run_dir} started: {now.get('path')} has sha256 "
                         f"{now.get('sha256', '?')[:16]}..., config.json recorded {was.get('sha256', '?')[:16]}... "
                         f"({was.get('path')}); resume with the original data or start a new run")


def train(task: str | None = None, preset: str | None = None, overrides: dict | None = None, *,
          resume: str | os.PathLike | None = None, stop_at: int | None = None) -> dict:
    """Train `task` (or resume the run in `resume`); returns the run summary (also in summary.json).
    `stop_at` ends the process right after the checkpoint of that step, as a kill would (for tests)."""
    saved = None
    if resume is not None:
        run_dir, saved, task_cls, task_cfg, cfg, ckpt = _load_resume(resume, overrides)
        preset = saved.get("preset")
    else:
        if task is None:
            raise ValueError("task: expected a task name or resume=RUN_DIR, got neither")
        (task_cls, task_cfg, cfg), ckpt, run_dir = resolve_config(task, preset, overrides), None, None
    if cfg.tensorboard:  # before anything is written: a missing package leaves no half-made run directory
        require("torch.utils.tensorboard", "tb", "--tensorboard", "tensorboard")
    rank, world, device = _setup_dist(cfg)
    if cfg.batch_size % (world * cfg.grad_accum):
        raise ValueError(f"batch_size: expected a multiple of world_size * grad_accum = "
                         f"{world * cfg.grad_accum}, got {cfg.batch_size}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    tk = task_cls(task_cfg)
    data = tk.data_fingerprint()  # (RL: hashes the dataset file, a second or less)
    if saved is not None:
        _check_data(saved, data, run_dir)
    raw = tk.build_model().to(device)
    n_params = sum(p.numel() for p in {id(p): p for p in raw.parameters()}.values())
    # a model without parameters (a forecasting baseline such as `repeat`) has nothing to train: it is
    # evaluated and checkpointed once, so `minrnn eval` and the tables treat it like any other run
    opt = make_optimizer(raw, cfg, device) if n_params else None
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16")
    st = {"step": 0, "best": None, "best_step": 0, "bad_evals": 0, "train_time": 0.0, "eval_time": 0.0}
    torch.manual_seed(cfg.seed * 7919 + 1 + rank)  # dropout stream, distinct per rank
    if ckpt is not None:
        ck.load_model_state(raw, ckpt["model"], str(Path(run_dir) / "ckpt_last.pt"))
        if opt is not None:
            opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        st.update(ckpt["state"])
        rngs = ckpt["rng"]
        if len(rngs) == world:
            ck.set_rng_state(rngs[rank])
        elif rank == 0:
            print(f"note: resumed with {world} processes, checkpoint has {len(rngs)}: dropout RNG reseeded")
    lock = log = None
    try:
        if rank == 0:
            if run_dir is None:
                run_dir = make_run_dir(cfg.out_dir, task_cls.name, task_cfg.model, cfg.seed, cfg.run_name)
            lock = RunLock(run_dir)  # before any write; a second process on this run stops here
            clean_tmp(run_dir)
            if ckpt is not None:
                repair_best(run_dir, ckpt)
            ck.atomic_write_json(Path(run_dir) / "config.json", {
                "task": task_cls.name, "preset": preset, "task_config": asdict(task_cfg),
                "train_config": asdict(cfg), "world_size": world, "params": n_params,
                "model_class": type(raw).__name__, "data": data,
                "versions": {"torch": torch.__version__, "python": platform.python_version()}})
            print(f"run {run_dir}: {task_cls.name} / {task_cfg.model}, {n_params:,} parameters, seed {cfg.seed}, "
                  f"{world} process(es) on {device}" + (f", resuming at step {st['step']}" if ckpt else ""))
            # a restarted run (resume without a checkpoint) keeps no line of the killed one
            log = ck.MetricsLog(Path(run_dir), cfg.tensorboard, st["step"] if resume is not None else None)
        model = torch.compile(raw) if cfg.compile else raw
        if world > 1:
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index]
                                                              if device.type == "cuda" else None)
        if opt is None:
            summary = _evaluate_only(tk, raw, cfg, st, rank, world, device, run_dir, log)
        else:
            summary = _loop(tk, model, raw, opt, scaler, cfg, st, rank, world, device, run_dir, log, stop_at)
        if summary is not None and rank == 0:
            summary.update(run_dir=str(run_dir), params=n_params)
            ck.atomic_write_json(Path(run_dir) / "summary.json", summary)
        if world > 1:
            # Tear down together: every rank waits here until all are done, then frees DDP's reducer (which
            # holds the process group) while its peers still exist. Freed later, after destroy_process_group
            # and a peer's exit, gloo's destructor can wait forever for its threads (seen on torch 2.13 CPU).
            dist.barrier()
            del model
    finally:
        if log is not None:
            log.close()
        if lock is not None:
            lock.release()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if summary is None:
        summary = {"stopped_at": stop_at}
    return {**summary, "run_dir": str(run_dir) if rank == 0 else None, "rank": rank}


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16)


def _set_lr(opt, cfg: TrainConfig, st: dict) -> float:
    lr = cfg.lr * lr_factor(st["step"], cfg, st["train_time"])
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


def _loop(tk, model, raw, opt, scaler, cfg, st, rank, world, device, run_dir, log, stop_at):
    from tqdm.auto import tqdm
    A, local_bs = cfg.grad_accum, cfg.batch_size // (world * cfg.grad_accum)
    bar = tqdm(total=cfg.steps, initial=st["step"], disable=rank != 0 or not cfg.progress, dynamic_ncols=True)
    fresh = {"loss": 0.0, "n": 0, "tokens": 0, "time": 0.0, "metrics": {}}
    win = st.setdefault("win", dict(fresh))  # the logging window is checkpointed: resumed logs are identical
    last_eval, stop = None, False
    model.train()
    while st["step"] < cfg.steps and not stop:
        t0 = time.perf_counter()
        lr = _set_lr(opt, cfg, st)
        loss_sum, tokens, mets = 0.0, 0, {}
        for m in range(A):
            lo = (rank * A + m) * local_bs
            batch = tk.train_batch(st["step"], cfg.seed, lo, lo + local_bs)
            tokens += tk.count_tokens(batch)
            batch = to_device(batch, device)
            sync = model.no_sync() if world > 1 and m < A - 1 else contextlib.nullcontext()
            with sync:
                with _autocast(cfg, device):
                    loss, lm = tk.loss(model, batch)
                scaler.scale(loss / A).backward()
            loss_sum += loss.item() / A
            for k, v in lm.items():
                mets[k] = mets.get(k, 0.0) + float(v) / A
        scaler.unscale_(opt)
        gnorm = torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip or float("inf"))
        _check_finite(loss_sum, float(gnorm), cfg, st, world, run_dir)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        st["step"] += 1
        dt = time.perf_counter() - t0
        st["train_time"] += dt
        over = cfg.time_budget > 0 and st["train_time"] >= cfg.time_budget
        red = torch.tensor([loss_sum, float(tokens), float(over)], dtype=torch.float64)
        if world > 1:  # mean loss, total tokens, and one stop decision for all ranks
            dist.all_reduce(red)
            red[0] /= world
        stop = bool(red[2] > 0)
        win["loss"] += float(red[0]); win["n"] += 1; win["tokens"] += int(red[1]); win["time"] += dt
        for k, v in mets.items():
            win["metrics"][k] = win["metrics"].get(k, 0.0) + v
        bar.update(1)
        bar.set_postfix(loss=f"{float(red[0]):.4f}", tok_s=f"{int(red[1]) / dt:,.0f}", refresh=False)
        step = st["step"]
        if log is not None and (step % cfg.log_every == 0 or step == cfg.steps or stop):
            n = win["n"]
            log.write({"kind": "train", "step": step, "time": round(st["train_time"], 4),
                       "loss": win["loss"] / n, "lr": lr, "grad_norm": float(gnorm),
                       "step_time": win["time"] / n, "tokens_per_s": win["tokens"] / win["time"],
                       **{k: v / n for k, v in win["metrics"].items()}})
        if step % cfg.log_every == 0:
            win = st["win"] = {**fresh, "metrics": {}}
        evaluate = step % cfg.eval_every == 0 or step == cfg.steps or stop
        if evaluate:
            last_eval = _evaluate(tk, raw, cfg, device, st, log, bar)
            if cfg.patience and st["bad_evals"] >= cfg.patience:
                stop = True
                if rank == 0:
                    bar.write(f"early stop at step {step}: no improvement of {tk.eval_split}_{tk.eval_metric} "
                              f"in {cfg.patience} evaluations")
        if evaluate or (cfg.ckpt_every and step % cfg.ckpt_every == 0) or step == stop_at:
            _save(tk, raw, opt, scaler, cfg, st, rank, world, run_dir)
        if stop_at is not None and step == stop_at:
            bar.close()
            return None
    bar.close()
    return {"steps": st["step"], "train_time": st["train_time"], "eval_time": st["eval_time"],
            f"best_{tk.eval_split}_{tk.eval_metric}": st["best"], "best_step": st["best_step"],
            "last_eval": last_eval}


def _evaluate_only(tk, raw, cfg, st, rank, world, device, run_dir, log):
    """The run of a parameter-free model: one evaluation at step 0 and its checkpoint (no training steps)."""
    from tqdm.auto import tqdm
    bar = tqdm(total=0, disable=True)
    last_eval = _evaluate(tk, raw, cfg, device, st, log, bar)
    _save(tk, raw, None, torch.amp.GradScaler("cuda", enabled=False), cfg, st, rank, world, run_dir)
    return {"steps": 0, "train_time": 0.0, "eval_time": st["eval_time"],
            f"best_{tk.eval_split}_{tk.eval_metric}": st["best"], "best_step": 0, "last_eval": last_eval}


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN/inf loss or gradient; the update was not applied."""


def _check_finite(loss: float, gnorm: float, cfg: TrainConfig, st: dict, world: int, run_dir) -> None:
    """Stop before a NaN/inf loss or gradient reaches the weights (all ranks together); the last checkpoint
    on disk stays the last good one. With fp16 an inf gradient is the grad scaler's business (it skips)."""
    bad = not math.isfinite(loss) or (cfg.amp != "fp16" and not math.isfinite(gnorm))
    if world > 1:
        flag = torch.tensor([float(bad)])
        dist.all_reduce(flag)
        bad = bool(flag[0] > 0)
    if bad:
        kept = (f"the last good checkpoint ({run_dir}/ckpt_last.pt, step {st.get('saved_step', 0)}) is kept"
                if st.get("saved_step") else "no checkpoint had been written yet")
        raise NonFiniteLoss(f"step {st['step'] + 1}: the training loss is {loss} and the gradient norm {gnorm} "
                            f"(expected finite values; lr {cfg.lr}, grad_clip {cfg.grad_clip}); training stopped "
                            f"before the update, {kept}. Try a lower --lr or --grad-clip.")


def _evaluate(tk, raw, cfg, device, st, log, bar) -> dict:
    t0 = time.perf_counter()
    raw.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad(), \
            _autocast(cfg, device):
        ev = {f"{tk.eval_split}_{k}": float(v) for k, v in tk.evaluate(raw, tk.eval_split).items()}
    raw.train()
    st["eval_time"] += time.perf_counter() - t0
    key = f"{tk.eval_split}_{tk.eval_metric}"
    if key not in ev:
        raise ValueError(f"{tk.name}.evaluate: expected a {tk.eval_metric!r} entry, got {sorted(ev)}")
    better = st["best"] is None or (ev[key] < st["best"] if tk.eval_mode == "min" else ev[key] > st["best"])
    if better:
        st["best"], st["best_step"], st["bad_evals"] = ev[key], st["step"], 0
    else:
        st["bad_evals"] += 1
    if log is not None:
        log.write({"kind": "eval", "step": st["step"], "time": round(st["train_time"], 4), **ev})
    if log is not None:
        bar.write(f"step {st['step']}: " + "  ".join(f"{k} {v:.4f}" for k, v in ev.items())
                    + f"  ({st['train_time']:.0f} s)")
    return ev


def _save(tk, raw, opt, scaler, cfg, st, rank, world, run_dir) -> None:
    rngs = [None] * world
    if world > 1:
        dist.all_gather_object(rngs, ck.rng_state())
    else:
        rngs = [ck.rng_state()]
    if rank != 0:
        return
    # ckpt_last first, then ckpt_best: ckpt_last records that its own step is the best one (best_step ==
    # step), so a kill between the two writes is repaired on resume (rundir.repair_best)
    st["saved_step"] = st["step"]
    state = dict(st)
    ckpt = {"task": tk.name, "model": raw.state_dict(),
            "optimizer": opt.state_dict() if opt is not None else {},
            "scheduler": {"step": st["step"], "train_time": st["train_time"]}, "scaler": scaler.state_dict(),
            "state": state, "rng": rngs, "data": {"seed": cfg.seed, "next_step": st["step"]}}
    ck.save_checkpoint(Path(run_dir) / "ckpt_last.pt", ckpt)
    if st["best"] is not None and st["best_step"] == st["step"]:
        ck.save_checkpoint(Path(run_dir) / "ckpt_best.pt", best_from_last(tk.name, ckpt))


def load_run(run_dir: str | os.PathLike, which: str = "best", device: str = "cpu", overrides: dict | None = None):
    """(task, model in eval mode, saved config dict) of a finished or running run, from ckpt_<which>.pt.
    `overrides` may change task fields that do not touch the model (e.g. the data path)."""
    if which not in ("best", "last"):
        raise ValueError(f"checkpoint: expected 'best' or 'last', got {which!r}")
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"run directory: expected {cfg_path} to exist")
    saved = json.loads(cfg_path.read_text())
    task_cls, task_cfg, _ = resolve_config(saved["task"], None, {**saved["task_config"], **(overrides or {})})
    path, ckpt = _load_ckpt(run_dir, which)
    if ckpt.get("task") != saved["task"]:
        raise ValueError(f"checkpoint task: expected {saved['task']!r}, got {ckpt.get('task')!r}")
    tk = task_cls(task_cfg)
    model = tk.build_model()
    ck.load_model_state(model, ckpt["model"], str(path))
    return tk, model.to(device).eval(), {**saved, "step": ckpt["state"]["step"]}


def _load_ckpt(run_dir: Path, which: str) -> tuple[Path, dict]:
    """(path, checkpoint) of ckpt_<which>; the best one is taken from ckpt_last when a kill left ckpt_best
    behind it (see rundir.best_mismatch), so eval never reads a stale best."""
    last_path = run_dir / "ckpt_last.pt"
    if which == "best" and last_path.is_file():
        last = ck.load_checkpoint(last_path)
        if best_mismatch(run_dir, last):
            print(f"note: {run_dir}/ckpt_best.pt is older than the best evaluation (step {last['state']['step']}) "
                  "recorded in ckpt_last.pt: using ckpt_last.pt (a resume rewrites ckpt_best.pt)", file=sys.stderr)
            return last_path, best_from_last(last["task"], last)
    path = run_dir / f"ckpt_{which}.pt"
    return path, ck.load_checkpoint(path)
