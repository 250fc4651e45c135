"""`minrnn bench`: training speed/memory vs nn.GRU/nn.LSTM, the loop and peers; scan vs the bandwidth floor;
step() inference. Flags are derived from `minrnn.bench.run.BenchConfig` (one per field, with its help line).
Writes <out>/bench_<tag>.json and .png and prints the tables; see docs/benchmarks.md.
"""
from __future__ import annotations

import dataclasses

_TUPLES = {"lengths": int, "infer_batches": int, "groups": str, "rows": str}


def _config_fields():
    from minrnn.bench.config import BenchConfig
    return BenchConfig, dataclasses.fields(BenchConfig)


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
    BenchConfig, fields = _config_fields()
    given = {}
    for f in fields:
        v = getattr(args, f.name)
        if v is None:
            continue
        if f.name in _TUPLES:
            try:
                v = tuple(_TUPLES[f.name](s) for s in v.split(",") if s)
            except ValueError as e:
                raise ValueError(f"--{f.name.replace('_', '-')}: expected a comma-separated list, got {v!r}") from e
        given[f.name] = v
    cfg = quick_config(**given) if args.quick else BenchConfig(**given)
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
    _, fields = _config_fields()
    for f in fields:
        flag = "--" + f.name.replace("_", "-")
        helptext = f.metadata.get("help", "")
        if f.name in _TUPLES:
            s.add_argument(flag, default=None, help=f"{helptext} (comma-separated; default "
                                                    f"{','.join(map(str, f.default))})")
        elif f.type in (bool, "bool"):
            s.add_argument(flag, default=None, action=__import__("argparse").BooleanOptionalAction,
                           help=helptext)
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            s.add_argument(flag, type=typ, default=None, help=f"{helptext} (default {f.default})")
    s.set_defaults(func=run)
