"""`minrnn bench`: training speed/memory vs nn.GRU/nn.LSTM, the loop and peers; scan vs the bandwidth floor;
step() inference. Flags are derived from `minrnn.bench.config.BenchConfig` by `minrnn.dataclass_cli`.
Writes <out>/bench_<tag>.json and .png and prints the tables; see docs/benchmarks.md.
"""
from __future__ import annotations

from minrnn.bench.config import BenchConfig
from minrnn.dataclass_cli import add_dataclass_args, given


def run(args) -> int:
    import os
    from pathlib import Path

    from minrnn.bench import report
    from minrnn.bench.config import quick_config
    from minrnn.bench.run import run_bench, write_json
    if args.from_json:  # re-print the tables and redraw the plot of an earlier run
        import json
        src = Path(args.from_json)
        res = json.loads(src.read_text())
        print(report.format_report(res))
        if not args.no_plot and any(e["group"] == "train" for e in res["results"]):
            print(f"wrote {report.plot(res, src.with_suffix('.png'))}")
        return 0
    flags = given(args, BenchConfig)
    cfg = quick_config(**flags) if args.quick else BenchConfig(**flags)
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE" and cfg.device == "cpu":
        print("note: OMP_WAIT_POLICY is not PASSIVE; with >1 thread small parallel regions may stall")
    out = Path(cfg.out)
    part = out / f"bench_{cfg.tag}.partial.json"
    res = run_bench(cfg, progress=not args.no_progress, partial=part)
    j = write_json(res, out / f"bench_{cfg.tag}.json")
    part.unlink(missing_ok=True)
    print(report.format_report(res))
    print(f"\nwrote {j}")
    if not args.no_plot and any(e["group"] == "train" for e in res["results"]):
        print(f"wrote {report.plot(res, out / f'bench_{cfg.tag}.png')}")
    return 0


def register(sub) -> None:
    s = sub.add_parser("bench", help="training speed/memory and inference benchmark (tables, JSON, PNG)")
    s.add_argument("--quick", action="store_true", help="small shapes and few repeats (CI smoke run, seconds)")
    s.add_argument("--no-plot", action="store_true", help="skip the PNG")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--from-json", default=None, metavar="PATH",
                   help="print the tables of an earlier run's JSON and redraw its PNG beside it; runs nothing")
    add_dataclass_args(s, BenchConfig)
    s.set_defaults(func=run)
