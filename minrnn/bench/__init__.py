"""Benchmarks: training speed and memory of minGRU/minLSTM against nn.GRU/nn.LSTM, the sequential loop and
peers; the scan against the bandwidth floor; step() inference.

  timing.py  timers (median of repeats after warm-up, time budget) and peak training memory
  rows.py    what is measured: lists of `Row`s, each a callable factory; a device section (e.g. CUDA) appends
             its own rows to `ROWS`
  config.py  `BenchConfig` (all settings; the CLI flags come from it)
  run.py     the loop over rows x lengths (tqdm progress), JSON
  report.py  tables on stdout and the PNG plot (time vs length, speed-up vs length on a log axis)
  console.py the OMP_WAIT_POLICY note (when it applies) and the profiler's log lines kept off the console
  gpu.py     the CUDA benchmark of the Triton kernels (separate entry point)
`minrnn bench` (minrnn/commands/bench.py) is the command line. Nothing heavy is imported here.
"""
