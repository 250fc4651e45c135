"""`minrnn forecast RUN_DIR --csv PATH [--out PRED.csv] [--plot PRED.png]`: forecast the next H rows of a series
with a trained `minrnn train forecast` run (see minrnn/tasks/forecast/predict.py)."""
from __future__ import annotations


def run(args) -> int:
    import sys

    from minrnn.tasks.forecast import predict as P
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    series, dates, values, cols, L = P.forecast_csv(args.run_dir, args.csv, args.ckpt)
    if args.out:
        P.write_forecast_csv(args.out, dates, values, cols)
    if args.plot:
        P.plot_forecast(args.plot, series, dates, values, cols, L, first=args.first)
    if not args.out:
        import io
        buf = io.StringIO()
        print("date," + ",".join(cols), file=buf)
        for d, row in zip(dates, values):
            print(d.strftime("%Y-%m-%d %H:%M:%S") + "," + ",".join(f"{v:.6g}" for v in row), file=buf)
        sys.stdout.write(buf.getvalue())
    else:
        print(f"wrote {len(dates)} forecast rows ({dates[0]} .. {dates[-1]}) of {len(cols)} columns to {args.out}"
              + (f" and the plot {args.plot}" if args.plot else ""))
    return 0


def register(sub) -> None:
    s = sub.add_parser("forecast", help="forecast the next H rows of a CSV series with a trained forecast run")
    s.add_argument("run_dir", help="run directory written by `minrnn train forecast`")
    s.add_argument("--csv", required=True, help="the series: a date column, then (at least) the run's columns; "
                   "the last L rows are the input")
    s.add_argument("--out", default=None, help="write the forecast here as CSV (default: print it)")
    s.add_argument("--plot", default=None, help="also draw history and forecast into this PNG (needs matplotlib)")
    s.add_argument("--first", default="OT", help="column drawn in the first panel of the plot (default: OT)")
    s.add_argument("--ckpt", choices=["best", "last"], default="best", help="which checkpoint")
    s.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    s.set_defaults(func=run)
