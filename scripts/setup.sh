#!/usr/bin/env bash
# Create .venv (if needed) and install minrnn with the extras given as $1 (e.g. "test" or "plot").
# torch is pinned to the CPU build first, so the `torch>=2.4` dependency installs nothing more.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[${1:-plot}]"
.venv/bin/minrnn info
