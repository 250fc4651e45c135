"""`minrnn bench`: training speed/memory vs nn.GRU/nn.LSTM, the loop and peers; scan vs the bandwidth floor;
step() inference. Flags are derived from `minrnn.bench.config.BenchConfig` by `minrnn.dataclass_cli`.
Writes <out>/bench_<tag>.json and .png (or the paths given by --json / --png) and prints the tables;
`--from-json PATH` redraws both from a saved JSON without running anything; see docs/benchmarks.md.
"""
from __future__ import annotations

import json
from pathlib import Path

from minrnn.bench.config import BenchConfig
from minrnn.dataclass_cli import add_dataclass_args, given


def load_result(path: str | Path) -> dict:
    """A saved `minrnn bench` JSON, checked enough that the tables and the plot can be drawn from it."""
    src = Path(path)
    if not src.is_file():
        raise ValueError(f"--from-json: expected an existing `minrnn bench` JSON file, got {str(src)!r}")
    try:
        res = json.loads(src.read_text())
    except ValueError as e:
        raise ValueError(f"--from-json: expected JSON in {str(src)!r}, got a parse error: {e}") from None
    missing = [k for k in ("config", "machine", "results", "skipped") if not isinstance(res, dict) or k not in res]
    if missing:
        raise ValueError(f"--from-json: expected a `minrnn bench` result with keys config, machine, results and "
                         f"skipped in {str(src)!r}, got none for {', '.join(missing)}")
    return res


def redraw(args) -> int:
    """Re-print the tables of a saved run and redraw its PNG (beside the JSON, or at --png)."""
    from minrnn.bench import report
    src = Path(args.from_json)
    res = load_result(src)
    print(report.format_report(res))
    if not args.no_plot and any(e["group"] == "train" for e in res["results"]):
        print(f"wrote {report.plot(res, Path(args.png) if args.png else src.with_suffix('.png'))}")
    return 0


def run(args) -> int:
    if args.from_json:
        return redraw(args)
    from minrnn.bench import report
    from minrnn.bench.config import quick_config
    from minrnn.bench.console import omp_note
    from minrnn.bench.run import run_bench, write_json
    flags = given(args, BenchConfig)
    cfg = quick_config(**flags) if args.quick else BenchConfig(**flags)
    note = omp_note(cfg.device, [int(t) for t in cfg.thread_sweep] or [cfg.threads])
    if note:
        print(note)
    out = Path(cfg.out)
    j = Path(args.json) if args.json else out / f"bench_{cfg.tag}.json"
    part = j.with_name(j.stem + ".partial.json")
    res = run_bench(cfg, progress=not args.no_progress, partial=part)
    write_json(res, j)
    part.unlink(missing_ok=True)
    print(report.format_report(res))
    print(f"\nwrote {j}")
    if not args.no_plot and any(e["group"] == "train" for e in res["results"]):
        png = Path(args.png) if args.png else out / f"bench_{cfg.tag}.png"
        print(f"wrote {report.plot(res, png)}")
    return 0


def register(sub) -> None:
    s = sub.add_parser("bench", help="training speed/memory and inference benchmark (tables, JSON, PNG)")
    s.add_argument("--quick", action="store_true", help="small shapes and few repeats (CI smoke run, seconds)")
    s.add_argument("--no-plot", action="store_true", help="skip the PNG")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--json", default=None, metavar="PATH",
                   help="write the JSON here instead of <out>/bench_<tag>.json (e.g. docs/data/bench_cpu.json)")
    s.add_argument("--png", default=None, metavar="PATH",
                   help="write the PNG here instead of <out>/bench_<tag>.png, or with --from-json instead of "
                        "beside the JSON (e.g. docs/img/bench_cpu.png)")
    s.add_argument("--from-json", default=None, metavar="PATH",
                   help="print the tables of an earlier run's JSON and redraw its PNG (beside it, or at --png); "
                        "runs nothing")
    add_dataclass_args(s, BenchConfig)
    s.set_defaults(func=run)
