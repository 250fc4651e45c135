#!/usr/bin/env bash
# Set everything up and run the main job: train a tiny minGRU character model on CPU and sample from it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh plot
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
.venv/bin/minrnn demo "$@"
