#!/usr/bin/env bash
# Selective copying (issue 5): the full experiment commands. Run from the repository root.
#   scripts/experiments/selective_copy.sh cpu [GROUP]     # cpu preset (5-8 min per 3-layer run on one free core)
#   scripts/experiments/selective_copy.sh paper [GROUP]   # paper preset: 400k steps at length 4096 (GPU)
#   scripts/experiments/selective_copy.sh table           # tables and the accuracy-vs-time plot of what exists
# GROUP (default all, in this order):
#   main       minGRU and minLSTM, 3 layers (the authors' model), seed 0
#   ablation   minGRU with 1, 2, 3 layers x seeds 0, 1, 2 (3 layers seed 0 is the main run)
#   baselines  nn.GRU, nn.LSTM, Transformer (3 layers, d_model 64), seed 0
#   lstm-ablation  minLSTM with 1, 2, 3 layers x seeds 0, 1, 2
# Every run is `minrnn train selective-copy`, then `minrnn eval RUN_DIR --split test` into eval_test.json;
# a run whose summary.json exists is not trained again. PIN pins every process, e.g. PIN="taskset -c 1".
set -euo pipefail
PRESET=${1:-cpu}
GROUP=${2:-all}
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs}
THREADS=${THREADS:-1}
PIN=${PIN:-}
EXTRA=${EXTRA:-}  # extra flags for every `minrnn train`, e.g. EXTRA="--time-budget 600"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$THREADS
mkdir -p "$RUNS/logs"

run() {  # run NAME ARGS...: train, then evaluate the best checkpoint on the test set
  local name=$1; shift
  if [ ! -f "$RUNS/$name/summary.json" ]; then
    $PIN $PY -m minrnn.cli train selective-copy "$@" --threads "$THREADS" --out-dir "$RUNS" --run-name "$name" \
      --no-progress $EXTRA > "$RUNS/logs/$name.log" 2>&1
  fi
  $PIN $PY -m minrnn.cli eval "$RUNS/$name" --split test --threads "$THREADS" > "$RUNS/$name/eval_test.json.tmp"
  mv "$RUNS/$name/eval_test.json.tmp" "$RUNS/$name/eval_test.json"
  tail -1 "$RUNS/$name/eval_test.json"
}

ablation() {  # ablation MODEL: 1, 2, 3 layers x 3 seeds
  for seed in 0 1 2; do
    for layers in 1 2 3; do
      run "sc-$PRESET-$1-L$layers-s$seed" --preset "$PRESET" --model "$1" --n-layers "$layers" --seed "$seed"
    done
  done
}

case "$PRESET" in
  cpu|paper)
    case "$GROUP" in main|all) for model in mingru minlstm; do
      run "sc-$PRESET-$model-L3-s0" --preset "$PRESET" --model "$model" --n-layers 3 --seed 0; done ;; esac
    case "$GROUP" in ablation|all) ablation mingru ;; esac
    case "$GROUP" in baselines|all) for model in gru lstm transformer; do
      run "sc-$PRESET-$model-L3-s0" --preset "$PRESET" --model "$model" --n-layers 3 --seed 0; done ;; esac
    case "$GROUP" in lstm-ablation|all) ablation minlstm ;; esac
    case "$GROUP" in main|ablation|baselines|lstm-ablation|all) ;;
      *) echo "group: expected main, ablation, baselines, lstm-ablation or all, got $GROUP" >&2; exit 2 ;; esac
    ;;
  table)
    for p in cpu paper; do
      ls -d "$RUNS"/sc-$p-*/ >/dev/null 2>&1 || continue
      $PY scripts/experiments/summarize.py table "$RUNS"/sc-$p-*/
      ls -d "$RUNS"/sc-$p-mingru-L*/ >/dev/null 2>&1 && \
        $PY scripts/experiments/summarize.py plot "$RUNS"/sc-$p-mingru-L*/ --out "$RUNS/sc-$p-ablation-acc-vs-time.png"
    done
    ;;
  *) echo "usage: $0 cpu|paper [main|ablation|baselines|lstm-ablation|all] | $0 table" >&2; exit 2 ;;
esac
