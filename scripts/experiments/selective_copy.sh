#!/usr/bin/env bash
# Selective copying (issue 5): the full experiment commands. Run from the repository root.
#   scripts/experiments/selective_copy.sh cpu      # cpu preset: main runs + layer ablation (hours on 2 cores)
#   scripts/experiments/selective_copy.sh paper    # paper preset: 400k steps at length 4096 (GPU)
#   scripts/experiments/selective_copy.sh table    # tables and the accuracy-vs-time plot of what exists
# Every run is `minrnn train selective-copy`, then `minrnn eval RUN_DIR --split test` into eval_test.json.
set -euo pipefail
PRESET=${1:-cpu}
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs}
THREADS=${THREADS:-1}
EXTRA=${EXTRA:-}  # extra flags for every `minrnn train`, e.g. EXTRA="--time-budget 150 --steps 600"
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$RUNS/logs"

run() {  # run NAME ARGS...: train, then evaluate the best checkpoint on the test set
  local name=$1; shift
  if [ ! -f "$RUNS/$name/summary.json" ]; then
    $PY -m minrnn.cli train selective-copy "$@" --threads "$THREADS" --out-dir "$RUNS" --run-name "$name" \
      --no-progress $EXTRA > "$RUNS/logs/$name.log" 2>&1
  fi
  $PY -m minrnn.cli eval "$RUNS/$name" --split test --threads "$THREADS" > "$RUNS/$name/eval_test.json.tmp"
  mv "$RUNS/$name/eval_test.json.tmp" "$RUNS/$name/eval_test.json"
  tail -1 "$RUNS/$name/eval_test.json"
}

case "$PRESET" in
  cpu|paper)
    # main table: the authors' model (3 layers, d_model 64, expansion 6, no conv, no MLP) and baselines
    for model in mingru minlstm gru lstm transformer; do
      run "sc-$PRESET-$model-L3-s0" --preset "$PRESET" --model "$model" --n-layers 3 --seed 0
    done
    # layer ablation: 1, 2, 3 layers x 3 seeds (seed 0 of 3 layers is the main run)
    for model in mingru minlstm; do
      for layers in 1 2 3; do
        for seed in 0 1 2; do
          run "sc-$PRESET-$model-L$layers-s$seed" --preset "$PRESET" --model "$model" --n-layers "$layers" --seed "$seed"
        done
      done
    done
    ;&
  table)
    for p in cpu paper; do
      ls -d "$RUNS"/sc-$p-* >/dev/null 2>&1 || continue
      $PY scripts/experiments/summarize.py table "$RUNS"/sc-$p-*/
      ls -d "$RUNS"/sc-$p-mingru-L* >/dev/null 2>&1 && \
        $PY scripts/experiments/summarize.py plot "$RUNS"/sc-$p-mingru-L*/ --out "$RUNS/sc-$p-ablation-acc-vs-time.png"
    done
    ;;
  *) echo "usage: $0 cpu|paper|table" >&2; exit 2 ;;
esac
