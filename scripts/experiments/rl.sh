#!/usr/bin/env bash
# Offline RL (issue 6): Decision-minGRU / Decision-minLSTM / DT on the locomotion stand-ins. Run from the repo root.
#   scripts/experiments/rl.sh small   # hopper-medium, MODELS x SEEDS (default 0 1 2), cpu preset (~minutes/run)
#   MODELS=mamba SEEDS=0 scripts/experiments/rl.sh grid   # Decision Mamba on every cell (~14 min/run on CPU)
#   scripts/experiments/rl.sh paper   # the full grid: 3 envs x (medium, medium-replay) x 3 models x 3 seeds,
#                                     # DT's recipe (100k steps, d 128, 3 layers, K 20, lr 1e-4): GPU-days on CPU
#   scripts/experiments/rl.sh grid    # every stand-in cell (3 envs x medium, medium-replay) x 3 models x SEEDS,
#                                     # cpu preset; finished runs and evals are skipped, a killed run is
#                                     # continued from its last checkpoint (--resume), so it resumes
#   scripts/experiments/rl.sh table   # markdown tables of every eval json under $RUNS, and the score plot
#                                     # (one panel per env-dataset, mean over seeds) of every finished run
# Each run: `minrnn train rl`, then `minrnn rl eval` of the last checkpoint (EPISODES per seed, 3 eval seeds)
# into RUN_DIR/eval_rl.json; minRNN runs are also evaluated with --mode window (DT-style acting) for comparison.
set -euo pipefail
WHAT=${1:-small}
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs}
THREADS=${THREADS:-1}
EPISODES=${EPISODES:-5}
SEEDS=${SEEDS:-"0 1 2"}
CELLS=${CELLS:-"hopper:medium hopper:medium-replay walker2d:medium halfcheetah:medium walker2d:medium-replay halfcheetah:medium-replay"}  # grid cells (env:dataset)
MODELS=${MODELS:-"mingru minlstm dt"}  # grid/small models; mamba = Decision Mamba (needs minrnn[mamba])
WINDOW=${WINDOW:-1}   # 0: skip the extra --mode window evaluation of the minRNN runs
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$RUNS/logs"

run() {  # run NAME PRESET ENV DATASET MODEL SEED
  local name=$1 preset=$2 env=$3 ds=$4 model=$5 seed=$6
  if [ ! -f "$RUNS/$name/summary.json" ] && [ -f "$RUNS/$name/ckpt_last.pt" ]; then  # killed mid-run: continue it
    $PY -m minrnn.cli train --resume "$RUNS/$name" --no-progress >> "$RUNS/logs/$name.log" 2>&1
  elif [ ! -f "$RUNS/$name/summary.json" ]; then
    rm -rf "${RUNS:?}/$name"  # killed before its first checkpoint: nothing to keep
    $PY -m minrnn.cli train rl --preset "$preset" --env "$env" --dataset "$ds" --model "$model" --seed "$seed" \
      --threads "$THREADS" --out-dir "$RUNS" --run-name "$name" --no-progress > "$RUNS/logs/$name.log" 2>&1
  fi
  [ -f "$RUNS/$name/eval_rl.json" ] || \
  $PY -m minrnn.cli rl eval "$RUNS/$name" --ckpt last --episodes "$EPISODES" --seeds 0,1,2 --threads "$THREADS" \
    --out "$RUNS/$name/eval_rl.json"
  if [ "$model" != dt ] && [ "$WINDOW" = 1 ] && [ ! -f "$RUNS/$name/eval_rl_window.json" ]; then
    $PY -m minrnn.cli rl eval "$RUNS/$name" --ckpt last --episodes "$EPISODES" --seeds 0,1,2 --mode window \
      --threads "$THREADS" --out "$RUNS/$name/eval_rl_window.json"
  fi
}

case "$WHAT" in
  small)
    for seed in $SEEDS; do
      for model in $MODELS; do
        run "rl-cpu-hopper-medium-$model-s$seed" cpu hopper medium "$model" "$seed"
      done
    done ;;
  grid)
    for cell in $CELLS; do
      env=${cell%%:*}; ds=${cell#*:}
      for seed in $SEEDS; do
        for model in $MODELS; do
          run "rl-cpu-$env-$ds-$model-s$seed" cpu "$env" "$ds" "$model" "$seed"
        done
      done
    done ;;
  paper)
    for env in hopper halfcheetah walker2d; do
      for ds in medium medium-replay; do
        for seed in 0 1 2; do
          for model in mingru minlstm dt; do
            run "rl-paper-$env-$ds-$model-s$seed" paper "$env" "$ds" "$model" "$seed"
          done
        done
      done
    done ;;
  table)
    $PY scripts/experiments/rl_table.py "$RUNS"
    done_runs=$(for d in "$RUNS"/rl-*-s[0-9]*; do [ -f "$d/summary.json" ] && echo "$d"; done)  # finished runs
    if [ -n "$done_runs" ]; then $PY -m minrnn.cli rl plot $done_runs --out "$RUNS/rl_score.png"; fi ;;
  *) echo "usage: $0 small|grid|paper|table" >&2; exit 2 ;;
esac
