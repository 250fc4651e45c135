#!/usr/bin/env bash
# GPU check of the Triton kernels, run on a CUDA machine from the repository root: at most 9 minutes
# (tests <= 3, bench <= 6, each cut by `timeout`, the bench's JSON written after every section; QUICK=1
# for a shorter bench). It needs python3 with a CUDA torch; it installs nothing from the network except
# triton when it is missing. Writes into OUT_DIR (default: $OUT if set, else bench/out):
#   gpu_tests.log/.xml  tests/test_triton.py compiled for the GPU (plus the large-shape tests)
#   gpu_bench.json/.log python -m minrnn.bench.gpu: copy bandwidth, scan bandwidth, training speed-up vs
#                       cuDNN and the sequential loop over T=64..4096, peers, launch-config sweep
#   gpu_check.json      summary: environment, test counts, exit codes
# Peers (accelerated-scan, flash-linear-attention's HGRN) are compared when importable. A machine without
# network can take them as wheels in .whl/ (fetch them where pip works; see docs/gpu.md).
set -u -o pipefail
OUT_DIR=${1:-${OUT:-bench/out}}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/minrnn_site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/minrnn_site"
fi
$PY -c "import triton" 2>/dev/null || $PY -m pip install -q --retries 0 --timeout 20 triton || echo "triton is not installed"
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')" || exit 2
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$OUT_DIR/gpu_smi.log"

start=$(date +%s)
XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")  # parallel kernel compiles when pytest-xdist is there
timeout ${TESTS_TIMEOUT:-180} $PY -m pytest -q -p no:cacheprovider $XDIST tests/test_triton.py \
  --junitxml="$OUT_DIR/gpu_tests.xml" 2>&1 | tee "$OUT_DIR/gpu_tests.log"
tests_rc=$?
tests_s=$(( $(date +%s) - start ))

start=$(date +%s)
timeout ${BENCH_TIMEOUT:-360} $PY -m minrnn.bench.gpu --out "$OUT_DIR/gpu_bench.json" ${QUICK:+--quick} \
  2>&1 | tee "$OUT_DIR/gpu_bench.log"
bench_rc=$?
bench_s=$(( $(date +%s) - start ))

$PY - "$OUT_DIR" "$tests_rc" "$tests_s" "$bench_rc" "$bench_s" <<'EOF'
import json, os, sys, xml.etree.ElementTree as ET
out, tests_rc, tests_s, bench_rc, bench_s = sys.argv[1], *map(int, sys.argv[2:])
summary = dict(tests_rc=tests_rc, tests_s=tests_s, bench_rc=bench_rc, bench_s=bench_s)
try:
    suite = ET.parse(os.path.join(out, "gpu_tests.xml")).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    summary["tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
except (OSError, ET.ParseError, IndexError) as e:
    summary["tests"] = f"no junit xml: {e}"
try:
    bench = json.load(open(os.path.join(out, "gpu_bench.json")))
    summary["env"], summary["copy_gbps"] = bench.get("env"), bench.get("copy_gbps")
    summary["targets"] = bench.get("targets")
except (OSError, ValueError) as e:
    summary["bench"] = f"no bench json: {e}"
tmp = os.path.join(out, "gpu_check.json.tmp")
with open(tmp, "w") as f:
    json.dump(summary, f, indent=1)
os.replace(tmp, os.path.join(out, "gpu_check.json"))
print(json.dumps(summary, indent=1))
EOF
exit $(( tests_rc != 0 || bench_rc != 0 ))
