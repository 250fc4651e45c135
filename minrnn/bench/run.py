"""`BenchConfig` and the benchmark loop: every selected row at every size, side by side in one process.

For each (row, size) the row's callable is built, for train rows its peak memory probed once
(`timing.peak_memory`; that call also serves as the first warm-up), then timed (`timing.time_call`); with
`rounds` > 1 the whole sequence runs that many times and each case's calls are pooled. Results, the machine and
the settings go to a JSON file; the tables and the plot come from `report.py`. Ratios are only ever computed
between rows of the same run.
"""
from __future__ import annotations

import fnmatch
import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from . import rows as rows_mod
from .config import BenchConfig, quick_config  # noqa: F401  (re-exported)
from .timing import peak_memory, summarize, time_call

def select(cfg: BenchConfig) -> list[rows_mod.Row]:
    rows = [r for r in rows_mod.ROWS if r.group in cfg.groups]
    if cfg.rows:
        rows = [r for r in rows if any(fnmatch.fnmatch(r.name, pat) for pat in cfg.rows)]
    return rows


def machine_info(cfg: BenchConfig) -> dict:
    import minrnn
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu, "cores": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "minrnn": minrnn.__version__, "commit": commit, "threads": torch.get_num_threads(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
            "allocator": "LD_PRELOAD=" + os.environ["LD_PRELOAD"] if os.environ.get("LD_PRELOAD") else "glibc malloc"}
    if cfg.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _sizes(cfg: BenchConfig, row: rows_mod.Row) -> list[int]:
    return list(cfg.infer_batches) if row.group == "infer" else list(cfg.lengths)


def run_bench(cfg: BenchConfig, progress: bool = True, partial: Path | None = None) -> dict:
    """Run every selected row at every size; return the results dict (also what the JSON holds).

    partial: a JSON path rewritten after every case, so that a long run that is stopped keeps what it measured.
    """
    from tqdm import tqdm
    counts = [int(t) for t in cfg.thread_sweep] or [cfg.threads]
    sweep = len(counts) > 1
    torch.set_num_threads(counts[0])
    rows = select(cfg)
    if not rows:
        raise ValueError(f"rows: no row matches {list(cfg.rows)} in groups {list(cfg.groups)}")
    res = {"config": asdict(cfg), "machine": machine_info(cfg), "results": [], "skipped": []}
    jobs = []
    for row in rows:
        why = row.unavailable(cfg.device)
        if why:
            res["skipped"].append({"row": row.name, "reason": why})
        else:
            jobs += [(row, n, t) for n in _sizes(cfg, row) for t in counts]
    # Size-major order: the rows compared at one size run back to back (each row's thread counts one after
    # the other), so that a shared machine's load, which drifts over minutes, affects both sides of a ratio alike.
    order = {r.name: i for i, r in enumerate(rows)}
    jobs.sort(key=lambda j: (j[0].group != "train", j[0].group, j[1], order[j[0].name], counts.index(j[2])))
    jobs = [(row, n, t) for row, n, t in jobs if not _skip(cfg, res, row, n, t, counts)]
    # With rounds > 1 the whole sequence runs again; each case's timed calls of every round are pooled.
    acc: dict[tuple, dict] = {}
    bar = tqdm(total=len(jobs) * cfg.rounds, desc="bench", unit="case", disable=not progress, dynamic_ncols=True)
    for rnd in range(cfg.rounds):
        for row, n, threads in jobs:
            bar.set_postfix_str(f"{row.name} @ {n}" + (f" {threads}t" if sweep else "")
                                + (f" round {rnd + 1}/{cfg.rounds}" if cfg.rounds > 1 else ""))
            torch.set_num_threads(threads)
            fn = row.make(cfg, n)
            probe = row.group == "train" and cfg.memory and rnd == 0
            # The memory probe is one untimed call, so it doubles as the first warm-up call.
            mib = peak_memory(fn, cfg.device) / 2 ** 20 if probe else None
            t = time_call(fn, device=cfg.device, warmup=max(0, cfg.warmup - probe), repeats=cfg.repeats,
                          min_repeats=cfg.min_repeats, max_seconds=cfg.max_seconds)
            del fn
            a = acc.setdefault((row.name, n, threads), {"times": []})
            a["times"] += t["times_ms"]
            if probe:
                a["peak_mib"] = mib
            res["results"] = _entries(jobs, acc, counts, sweep)
            if partial is not None:
                write_json(res, partial)
            bar.update()
    bar.close()
    torch.set_num_threads(counts[0])
    return res


def _skip(cfg: BenchConfig, res: dict, row, n: int, threads: int, counts: list[int]) -> bool:
    """Whether a case is not run (a loop row past loop_max_len, or past the row's max_len); noted once."""
    why = None
    if row.max_len is not None and row.group != "infer" and n > row.max_len:
        why = f"length > {row.max_len} (O(T^2) cost)"
    elif row.slow and row.group != "infer" and n > cfg.loop_max_len:
        why = f"length > loop_max_len={cfg.loop_max_len}"
    if why and threads == counts[0]:
        res["skipped"].append({"row": row.name, "size": n, "reason": why})
    return why is not None


def _entries(jobs, acc: dict, counts: list[int], sweep: bool) -> list[dict]:
    """The result entries of every case measured so far, in job order; with a thread sweep, each row's bare-name
    entry (its fastest count) follows its last count."""
    out = []
    for row, n, threads in jobs:
        a = acc.get((row.name, n, threads))
        if a is None:
            continue
        t = summarize(a["times"])
        entry = {"row": f"{row.name} @{threads}t" if sweep else row.name, "group": row.group, "size": n,
                 "ref": row.ref, "threads": threads, **t}
        if "peak_mib" in a:
            entry["peak_mib"] = a["peak_mib"]
        if row.group == "infer":
            entry["ms_per_token"] = t["median_ms"] / row.steps
            entry["tokens_per_s"] = n * row.steps / (t["median_ms"] / 1e3)
        out.append(entry)
        if sweep and threads == counts[-1]:
            out.append(_fastest(out[-len(counts):], row.name))
    return out


def _fastest(entries: list[dict], name: str) -> dict:
    """The entry of the fastest thread count, under the row's bare name (what the speed-ups compare), with every
    count's median kept in `by_threads`."""
    best = min(entries, key=lambda e: e["median_ms"])
    return {**best, "row": name, "by_threads": {str(e["threads"]): e["median_ms"] for e in entries}}


def write_json(res: dict, path: Path) -> Path:
    """Atomic write (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(res, f, indent=1)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600
    os.replace(tmp, path)
    return path
