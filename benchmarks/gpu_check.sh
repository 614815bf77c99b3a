#!/usr/bin/env bash
# The GPU check of issue 3, for a machine with a CUDA GPU and no internet:
# install (CUDA module included), run the CUDA tests, run the GPU benchmark.
# Writes RESULTS_DIR/gpu_check.log and RESULTS_DIR/gpu_bench.json. About 6
# minutes on an H200.
#
#   benchmarks/gpu_check.sh [RESULTS_DIR]    (default: gpu_results)
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS_DIR="${1:-gpu_results}"
mkdir -p "$RESULTS_DIR"
LOG="$RESULTS_DIR/gpu_check.log"
: > "$LOG"
status=0
step() { echo "== $*" | tee -a "$LOG"; }

step "environment"
{ echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown) date $(date -u +%Y-%m-%d)";
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; nvcc --version 2>&1 | tail -1;
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1; } | tee -a "$LOG"

step "install (PCORESET_CUDA=ON)"
if ! PCORESET_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
     timeout 300 python3 -m pip install --no-build-isolation --no-deps . >>"$LOG" 2>&1; then
  echo "install FAILED (see $LOG)" | tee -a "$LOG"; exit 1
fi
# Run from outside the source tree so the installed package (with _C_cuda) is imported.
cd "$RESULTS_DIR" && RESULTS_ABS="$(pwd)" && cd - >/dev/null
(cd "$RESULTS_ABS" && python3 -c "import pcoreset, json; print(json.dumps(pcoreset.info()['cuda_module']))") 2>&1 | tee -a "$LOG"

step "CUDA tests"
(cd "$RESULTS_ABS" && timeout 180 python3 -m pytest -m cuda -q -p no:cacheprovider \
   --rootdir "$OLDPWD" -c "$OLDPWD/pyproject.toml" "$OLDPWD/tests/test_cuda.py") 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

step "GPU benchmark"
(cd "$RESULTS_ABS" && timeout 240 python3 "$OLDPWD/benchmarks/gpu_bench.py" --json "$RESULTS_ABS/gpu_bench.json") \
  2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

step "done (status $status)"
exit $status
