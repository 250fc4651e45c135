#!/usr/bin/env bash
# Chomsky-hierarchy tasks (issue 5): the `--task all` sweep. Run from the repository root.
#   scripts/experiments/chomsky.sh cpu [MODELS...]     # all 7 problems, cpu preset (default models: mingru minlstm)
#   scripts/experiments/chomsky.sh paper [MODELS...]   # all 7 problems, paper preset (our full budget)
#   scripts/experiments/chomsky.sh table               # the results table of what exists
# Train on lengths 1-40, validate on 1-40, test on 40..256 (step 8 in cpu, every length in paper).
set -euo pipefail
PRESET=${1:-cpu}; shift || true
MODELS=${*:-mingru minlstm}
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs}
THREADS=${THREADS:-1}
EXTRA=${EXTRA:-}  # extra flags for every `minrnn train`, e.g. EXTRA="--time-budget 150 --steps 600"
SEED=${SEED:-0}
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$RUNS/logs"
PROBLEMS="parity even_pairs cycle_nav bucket_sort majority majority_count missing_duplicate"

case "$PRESET" in
  cpu|paper)
    for model in $MODELS; do
      for problem in $PROBLEMS; do
        name="ch-$PRESET-$problem-$model-s$SEED"
        if [ ! -f "$RUNS/$name/summary.json" ]; then
          $PY -m minrnn.cli train chomsky --preset "$PRESET" --problem "$problem" --model "$model" --seed "$SEED" \
            --threads "$THREADS" --out-dir "$RUNS" --run-name "$name" --no-progress $EXTRA > "$RUNS/logs/$name.log" 2>&1
        fi
        $PY -m minrnn.cli eval "$RUNS/$name" --split test --threads "$THREADS" > "$RUNS/$name/eval_test.json.tmp"
        mv "$RUNS/$name/eval_test.json.tmp" "$RUNS/$name/eval_test.json"
        tail -1 "$RUNS/$name/eval_test.json"
      done
    done
    ;&
  table)
    for p in cpu paper; do
      ls -d "$RUNS"/ch-$p-* >/dev/null 2>&1 && $PY scripts/experiments/summarize.py table "$RUNS"/ch-$p-*/
    done
    ;;
  *) echo "usage: $0 cpu|paper|table [MODELS...]" >&2; exit 2 ;;
esac
