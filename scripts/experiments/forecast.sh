#!/usr/bin/env bash
# Long-horizon forecasting (issue 15): the grid of docs/forecasting.md. Run from the repo root.
#   scripts/experiments/forecast.sh check     # the harness check: DLinear on ETTh1, L = H = 96 (published 0.386)
#   scripts/experiments/forecast.sh grid      # every dataset x horizon: mingru, minlstm, dlinear, repeat (seed 0)
#   scripts/experiments/forecast.sh baselines # itransformer and gru on ETTh1 and ETTm1, every horizon (seed 0)
#   scripts/experiments/forecast.sh ablation  # the minGRU forecaster's design switches on ETTh1/ETTm1 at H 96/720
#   scripts/experiments/forecast.sh seeds     # seeds 1 2 on ETTh1 and ETTm1 (H 96 and 720; SEED_HORIZONS=...)
#   scripts/experiments/forecast.sh all       # check, grid, baselines, ablation, seeds (in this order)
#   scripts/experiments/forecast.sh table     # tables (markdown + JSON) and plots from every finished run
# Each run: `minrnn train forecast --preset cpu` (one thread; at most 75 s of training, DLinear 120 s), then
# `minrnn eval RUN --split test` into RUN/eval_test.json. Finished runs are skipped and a killed run is
# continued from its last checkpoint (--resume), so the script resumes where it stopped.
# JOBS=2 runs two runs at a time, each pinned to its own core (taskset).
set -euo pipefail
WHAT=${1:-grid}
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/forecast}
JOBS=${JOBS:-2}
DATASETS=${DATASETS:-"ETTh1 ETTh2 ETTm1 ETTm2 weather exchange_rate national_illness"}
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$RUNS/logs"

horizons() { if [ "$1" = national_illness ]; then echo "24 36 48 60"; else echo "96 192 336 720"; fi; }

run() {  # run CORE NAME ARGS...: train (or resume) and evaluate on the test split
  local core=$1 name=$2; shift 2
  local pin="taskset -c $core"
  command -v taskset > /dev/null || pin=""
  if [ ! -f "$RUNS/$name/summary.json" ] && [ -f "$RUNS/$name/ckpt_last.pt" ]; then
    $pin $PY -m minrnn.cli train --resume "$RUNS/$name" --no-progress >> "$RUNS/logs/$name.log" 2>&1
  elif [ ! -f "$RUNS/$name/summary.json" ]; then
    rm -rf "${RUNS:?}/$name"
    $pin $PY -m minrnn.cli train forecast --preset cpu "$@" --out-dir "$RUNS" --run-name "$name" --no-progress \
      > "$RUNS/logs/$name.log" 2>&1
  fi
  if [ ! -f "$RUNS/$name/eval_test.json" ]; then
    $pin $PY -m minrnn.cli eval "$RUNS/$name" --split test --threads 1 > "$RUNS/$name/.eval_test.json.tmp"
    mv "$RUNS/$name/.eval_test.json.tmp" "$RUNS/$name/eval_test.json"
  fi
  $PY -c 'import json, sys; d = json.load(open(sys.argv[1])); print(sys.argv[2], "test mse %.4f mae %.4f" % (d["mse"], d["mae"]))' \
    "$RUNS/$name/eval_test.json" "$name"
}

queue() {  # queue NAME ARGS...: one line per run, executed by drain
  echo "$*" >> "$RUNS/.queue"
}

next_line() {  # pop the first queued line (under a lock: the workers share the queue)
  flock "$RUNS/.queue.lock" bash -c 'head -n 1 "$0"; sed -i 1d "$0"' "$RUNS/.queue"
}

worker() {  # worker CORE: run queued lines until none is left, pinned to CORE
  local line
  while line=$(next_line) && [ -n "$line" ]; do
    # shellcheck disable=SC2086
    run "$1" $line || echo "FAILED (see $RUNS/logs): $line"
  done
}

drain() {  # JOBS workers, worker k on core k; runs start in queue order (each run once)
  touch "$RUNS/.queue"
  awk '!seen[$0]++' "$RUNS/.queue" > "$RUNS/.queue.u" && mv "$RUNS/.queue.u" "$RUNS/.queue"
  for ((j = 0; j < JOBS; j++)); do worker "$j" & done
  wait
  rm -f "$RUNS/.queue" "$RUNS/.queue.lock"
}

grid() {
  for ds in $DATASETS; do
    for h in $(horizons "$ds"); do
      for model in repeat dlinear mingru minlstm; do
        queue "fc-$ds-$h-$model-s0" --dataset "$ds" --horizon "$h" --model "$model" --seed 0
      done
    done
  done
}

baselines() {
  for ds in ETTh1 ETTm1; do
    for h in 96 192 336 720; do
      for model in itransformer gru; do
        queue "fc-$ds-$h-$model-s0" --dataset "$ds" --horizon "$h" --model "$model" --seed 0
      done
    done
  done
}

ablation() {  # each switch of the minGRU forecaster's design off (or changed), one at a time
  for ds in ETTh1 ETTm1; do
    for h in 96 720; do
      queue "ab-$ds-$h-no_revin" --dataset "$ds" --horizon "$h" --model mingru --no-revin
      queue "ab-$ds-$h-no_ci" --dataset "$ds" --horizon "$h" --model mingru --no-channel-independent
      queue "ab-$ds-$h-no_patch" --dataset "$ds" --horizon "$h" --model mingru --patch-len 1 --patch-stride 1
      queue "ab-$ds-$h-autoregressive" --dataset "$ds" --horizon "$h" --model mingru --decoder autoregressive
      queue "ab-$ds-$h-no_highway" --dataset "$ds" --horizon "$h" --model mingru --no-highway
    done
  done
}

seeds() {  # SEED_HORIZONS / SEED_MODELS: the cells given 3 seeds (all of them: "96 192 336 720", add gru)
  for seed in 1 2; do
    for ds in ETTh1 ETTm1; do
      for h in ${SEED_HORIZONS:-96 720}; do
        for model in ${SEED_MODELS:-dlinear mingru minlstm itransformer}; do
          queue "fc-$ds-$h-$model-s$seed" --dataset "$ds" --horizon "$h" --model "$model" --seed "$seed"
        done
      done
    done
  done
}

rm -f "$RUNS/.queue"
case "$WHAT" in
  check) queue "fc-ETTh1-96-dlinear-s0" --dataset ETTh1 --horizon 96 --model dlinear --seed 0; drain ;;
  grid) grid; drain ;;
  baselines) baselines; drain ;;
  ablation) ablation; drain ;;
  seeds) seeds; drain ;;
  all) grid; baselines; ablation; seeds; drain ;;  # the grid starts with the check's run
  table) $PY scripts/experiments/forecast_table.py "$RUNS" ;;
  *) echo "usage: $0 check|grid|baselines|ablation|seeds|all|table" >&2; exit 2 ;;
esac
