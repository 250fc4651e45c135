"""Tables (stdout) and the plot (PNG) of a `run_bench` result.

Tables: training step time per row and length (ms, median), the headline speed-ups (`rows.SPEEDUPS`), peak
training memory (MiB and multiples of nn.GRU/nn.LSTM), the scan against the add floor (ms and x floor), and
step() inference (ms/token, tokens/s). The plot has the paper's two panels: time vs length (log-log) and
speed-up vs length (log y, ticks labelled 1x, 2x, 5x, ...); within a panel no two lines share a colour, and the
line style says what a row is (ours solid, references dashed, matmul floors dotted). matplotlib is imported
lazily (extra `plot`).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .rows import SPEEDUPS


def _index(res: dict, group: str) -> dict:
    return {(e["row"], e["size"]): e for e in res["results"] if e["group"] == group}


def _names(res: dict, group: str) -> list[str]:
    seen: list[str] = []
    for e in res["results"]:
        if e["group"] == group and e["row"] not in seen:
            seen.append(e["row"])
    return seen


def _table(title: str, cols: list, lines: list[tuple[str, list[str]]], width: int = 22) -> str:
    head = f"{title:<{width}}" + "".join(f"{c:>10}" for c in cols)
    out = [head, "-" * len(head)]
    out += [f"{name:<{width}}" + "".join(f"{v:>10}" for v in vals) for name, vals in lines]
    return "\n".join(out)


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _sweep(res: dict) -> list[int]:
    return [int(t) for t in res["config"].get("thread_sweep") or ()]


def speedups(res: dict, per_thread: bool = True) -> list[tuple[str, dict]]:
    """[(label, {length: ratio})] for the headline pairs present in the result. With a thread sweep: each side
    at its fastest thread count (label '... (best t)'), then (per_thread) both sides at each count."""
    idx, out = _index(res, "train"), []
    sizes = sorted({n for _, n in idx})
    counts = _sweep(res)
    variants = [("", " (best t)" if len(counts) > 1 else "")]
    if per_thread and len(counts) > 1:
        variants += [(f" @{t}t", f" @{t}t") for t in counts]
    for suffix, tag in variants:
        for slow, fast in SPEEDUPS:
            a, b = slow + suffix, fast + suffix
            r = {n: idx[(a, n)]["median_ms"] / idx[(b, n)]["median_ms"]
                 for n in sizes if (a, n) in idx and (b, n) in idx}
            if r:
                out.append((f"{slow} / {fast}{tag}", r))
    return out


SWEEP_NOTE = " (each row at each count; 'ROW' = its fastest)"


def _threads(res: dict) -> str:
    """The thread count(s) of the run: '2', or '1,2' for a thread sweep."""
    counts = _sweep(res)
    return ",".join(map(str, counts)) if len(counts) > 1 else str(res["machine"]["threads"])


def format_report(res: dict) -> str:
    m, c = res["machine"], res["config"]
    parts = [f"minrnn bench  {m['date']}  {m['cpu']} ({m['cores']} cores)  torch {m['torch']}  "
             f"commit {m['commit'] or '?'}",
             f"device {c['device']}  dtype {c['dtype']}  B={c['batch']}  D=H={c['width']}  threads {_threads(res)}"
             f"{SWEEP_NOTE if len(_sweep(res)) > 1 else ''}  "
             f"OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}  allocator: {m['allocator']}",
             f"median of up to {c['repeats']} timed calls after {c['warmup']} warm-up"
             + (f", in each of {c['rounds']} rounds of every case (calls pooled)" if c.get("rounds", 1) > 1 else "")
             + "; forward + backward"]
    idx = _index(res, "train")
    if idx:
        sizes = sorted({n for _, n in idx})
        names = _names(res, "train")
        lines = [(r, [_fmt(idx[(r, n)]["median_ms"] if (r, n) in idx else None, ".1f") for n in sizes])
                 for r in names]
        parts += ["", _table("train step (ms)  T =", sizes, lines)]
        sp = speedups(res)
        if sp:
            lines = [(lab, [_fmt(r.get(n), ".2f") for n in sizes]) for lab, r in sp]
            parts += ["", _table("speed-up (x)  T =", sizes, lines, width=max(34, max(len(x) for x, _ in lines) + 2))]
        if any("peak_mib" in e for e in idx.values()):
            lines = [(r, [_fmt(idx[(r, n)].get("peak_mib") if (r, n) in idx else None, ".1f") for n in sizes])
                     for r in names]
            parts += ["", _table("peak train memory (MiB)", sizes, lines, width=24)]
            rel = []
            for r in names:
                ref = idx.get((r, sizes[0]), {}).get("ref")
                if ref and r.split()[0] in ("minGRU", "minLSTM", "peer"):
                    rel.append((f"{r} / {ref}", [_fmt(idx[(r, n)]["peak_mib"] / idx[(ref, n)]["peak_mib"]
                                                      if (r, n) in idx and (ref, n) in idx else None, ".2f")
                                                 for n in sizes]))
            if rel:
                parts += ["", _table("memory ratio  T =", sizes, rel, width=34)]
    idx = _index(res, "scan")
    if idx:
        sizes = sorted({n for _, n in idx})
        lines = []
        for r in _names(res, "scan"):
            vals = []
            for n in sizes:
                e, f = idx.get((r, n)), idx.get(("add floor", n))
                vals.append("-" if e is None else f"{e['median_ms']:.2f}" if r == "add floor" or f is None
                            else f"{e['median_ms'] / f['median_ms']:.1f}x")
            lines.append((r, vals))
        parts += ["", _table("scan (add floor ms; others x floor)", sizes, lines, width=36)]
    idx = _index(res, "infer")
    if idx:
        lines = []
        for (r, n), e in idx.items():
            ref = idx.get((e["ref"], n)) if e["ref"] else None
            lines.append((f"{r} B={n}", [f"{e['ms_per_token']:.3f}", f"{e['tokens_per_s']:.0f}",
                                         _fmt(ref["median_ms"] / e["median_ms"] if ref else None, ".2f")]))
        parts += ["", _table("step()", ["ms/token", "tokens/s", "speed-up"], lines, width=26)]
    for s in res["skipped"]:
        parts.append(f"skipped: {s['row']}" + (f" @ {s['size']}" if "size" in s else "") + f": {s['reason']}")
    return "\n".join(parts)


# Line colours: distinct hues first (tab10, Dark2), then lighter ones (tab20's light shades), with no greys (the
# reference line y = 1 is grey). Every line of a panel gets its own colour; beyond this list, evenly spaced hues.
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
            "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
            "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")


def colors(n: int) -> list:
    """n distinct colours: the palette, then evenly spaced hues of the HSV circle if more are needed."""
    import colorsys
    extra = max(0, n - len(_PALETTE))
    return list(_PALETTE[:n]) + [colorsys.hsv_to_rgb((k + 0.5) / extra, 0.7, 0.75) for k in range(extra)]


def _row_style(name: str) -> str:
    """Our layers solid, the references dashed, the matmul floors dotted."""
    return ":" if "floor" in name else "-" if name.startswith("min") else "--"


def _speedup_label(x: float, _pos=None) -> str:
    """Tick labels of the log speed-up axis: 0.5x, 1x, 2x, 10x, 700x."""
    return f"{x:g}x"


def figure(res: dict):
    """The paper's Figure 1 panels: time vs length (log-log) and speed-up vs length (log y: ratios near 1x and a
    sequential loop's hundreds of x share the panel). Returns the Figure; each line of a panel has its own colour."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator
    except ImportError as e:
        raise RuntimeError("the plot needs matplotlib: pip install 'minrnn[plot]' (or matplotlib)") from e
    idx = _index(res, "train")
    sizes = sorted({n for _, n in idx})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    names = [r for r in _names(res, "train") if " @" not in r]  # with a thread sweep: each row at its fastest
    for r, color in zip(names, colors(len(names))):
        pts = sorted((n, e["median_ms"]) for (name, n), e in idx.items() if name == r)
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], _row_style(r), marker="o", ms=3, label=r,
                 color=color, lw=2.2 if r.endswith("fused") else 1.2)
    ax1.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="fwd+bwd time (ms)",
            title="training step, one layer")
    ax1.legend(fontsize=7, ncol=2)
    sp = speedups(res, per_thread=False)
    for (lab, r), color in zip(sp, colors(len(sp))):
        ns = sorted(r)
        ax2.plot(ns, [r[n] for n in ns], ":" if "floor" in lab else "-", marker="o", ms=3, label=lab, color=color)
    ax2.axhline(1.0, color="grey", lw=0.8)
    ax2.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="speed-up (x, log scale)",
            title="speed-up of the fused minGRU/minLSTM")
    ax2.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax2.yaxis.set_major_formatter(FuncFormatter(_speedup_label))
    ax2.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    c, m = res["config"], res["machine"]
    fig.suptitle(f"minrnn bench: {c['device']} {c['dtype']} B={c['batch']} D={c['width']} "
                 f"threads={_threads(res)}  ({m['cpu']}, {m['date']})", fontsize=9)
    fig.tight_layout()
    return fig


def plot(res: dict, path: Path) -> Path:
    """Draw `figure(res)` to a PNG at `path` (atomic write: a temporary file in the same folder, then rename)."""
    import matplotlib.pyplot as plt
    fig = figure(res)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600
    os.replace(tmp, path)
    return path
