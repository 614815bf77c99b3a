#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA GPU and no
# internet: build the extension in place (pytest imports the checkout, see
# pyproject's pythonpath), run the CUDA tests, run the GPU benchmark (old
# and new pass variants side by side). About 5 minutes on an H200; the
# stages' time limits (build 180 s, tests 130 s, benchmark 150 s) keep the
# whole under 8 minutes: call it with a timeout of about 480 s.
#
#   bash benchmarks/gpu_check.sh RESULTS_DIR     (default: gpu_results)
#
# Writes RESULTS_DIR/gpu_check.log, RESULTS_DIR/tests.xml (JUnit),
# RESULTS_DIR/gpu_bench.json and RESULTS_DIR/ptxas.txt (registers and
# spills of every kernel as built here).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
RESULTS_DIR="${1:-gpu_results}"
mkdir -p "$RESULTS_DIR"
RESULTS_DIR="$(cd "$RESULTS_DIR" && pwd)"
LOG="$RESULTS_DIR/gpu_check.log"
: > "$LOG"
status=0
start=$(date +%s)
step() { echo "== [$(( $(date +%s) - start ))s] $*" | tee -a "$LOG"; }

step "environment"
{ echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown) date $(date -u '+%Y-%m-%d %H:%M UTC')";
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  nvcc --version 2>&1 | tail -1; cmake --version 2>&1 | head -1; nproc
  python3 -c "import sys, torch, numpy; print('python', sys.version.split()[0], 'torch', torch.__version__,
              'cuda', torch.version.cuda, 'numpy', numpy.__version__)" 2>&1
  python3 -m pytest --version 2>&1; } | tee -a "$LOG"

step "build in place (PCORESET_CUDA=ON, sm_90, build dir _build/gpu)"
# ptxas -v output goes to the build log; the kernel lines are kept in ptxas.txt.
if ! PCORESET_CUDA=ON PCORESET_CUDA_ARCHS=90 PCORESET_BUILD_DIR=_build/gpu \
     CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" CMAKE_ARGS="-DCMAKE_CUDA_FLAGS=--ptxas-options=-v" \
     timeout "${GPU_CHECK_BUILD_TIMEOUT:-180}" python3 setup.py -q build_ext --inplace > "$RESULTS_DIR/build.log" 2>&1; then
  tail -40 "$RESULTS_DIR/build.log" | tee -a "$LOG"; echo "build FAILED" | tee -a "$LOG"; exit 1
fi
grep -E "Compiling entry function|registers|spill" "$RESULTS_DIR/build.log" > "$RESULTS_DIR/ptxas.txt" || true
echo "ptxas: $(grep -c 'Compiling entry' "$RESULTS_DIR/ptxas.txt") kernels," \
     "$(grep -E 'spill stores' "$RESULTS_DIR/ptxas.txt" | grep -vc ' 0 bytes spill stores, 0 bytes spill loads') with spills" \
  | tee -a "$LOG"
python3 -c "import pcoreset, json; print(json.dumps(pcoreset.info()['cuda_module']))" 2>&1 | tee -a "$LOG"

step "CUDA tests (tests/test_cuda.py -m cuda)"
timeout 130 python3 -m pytest -m cuda -q -p no:cacheprovider --durations=10 \
  --junitxml "$RESULTS_DIR/tests.xml" tests/test_cuda.py 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

step "GPU benchmark (old pass v1 / v2 graph / v2 persistent)"
timeout 150 python3 benchmarks/gpu_bench.py --json "$RESULTS_DIR/gpu_bench.json" 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

step "done (status $status)"
exit $status
