#!/usr/bin/env bash
# The GPU check: run on a Linux machine with an NVIDIA GPU and PyTorch (with CUDA) already installed, and no network.
#
#   bench/gpu/run.sh             install runner from the wheels carried with the tree, then the gpu-marked tests and
#                                the GPU benchmarks (within about 8 minutes on one H100)
#   bench/gpu/run.sh --dry-run   check this set-up and print the plan; installs and runs nothing (works anywhere)
#
# The wheels: `make gpu-wheels` (where there is network) downloads bench/gpu/requirements.txt into bench/gpu/wheels/
# (about 52 MiB, at most 64: torch, numpy and opencv are left out; the machine's torch and numpy are used).
# Settings: PYTHON (default python3, the interpreter that has the machine's torch), RUNNER_GPU_VENV (default
# .venv-gpu, made with the system's site packages so torch is reused), RUNNER_GPU_WHEELS (default bench/gpu/wheels),
# RUNNER_GPU_OUT (default outputs/gpu-check: logs and benchmark figures).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python3}
VENV=${RUNNER_GPU_VENV:-$REPO/.venv-gpu}
WHEELS=${RUNNER_GPU_WHEELS:-$HERE/wheels}
OUT=${RUNNER_GPU_OUT:-$REPO/outputs/gpu-check}
MAX_WHEEL_MIB=64
TEST_SECONDS=210
BENCH_SECONDS=270

dry=0
case "${1:-}" in
  --dry-run) dry=1 ;;
  "") ;;
  *) echo "usage: bench/gpu/run.sh [--dry-run]" >&2; exit 2 ;;
esac

problems=0
check() {  # check NAME OK_TEXT PROBLEM_TEXT COMMAND...: prints one line; counts a problem
  local name=$1 ok=$2 bad=$3; shift 3
  if "$@" >/dev/null 2>&1; then echo "  ok       $name: $ok"; else echo "  PROBLEM  $name: $bad"; problems=$((problems + 1)); fi
}
wheel_mib() { du -sm "$WHEELS" 2>/dev/null | cut -f1; }

echo "runner GPU check ($([ $dry = 1 ] && echo 'dry run: nothing is installed or run' || echo 'running'))"
echo "set-up:"
check "python" "$("$PYTHON" --version 2>&1)" "$PYTHON is missing or older than 3.11 (set PYTHON)" \
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'
check "repository" "$REPO" "pyproject.toml, tests/test_gpu.py or bench/gpu/bench.py missing" \
  test -f "$REPO/pyproject.toml" -a -f "$REPO/tests/test_gpu.py" -a -f "$HERE/bench.py" -a -f "$HERE/requirements.txt"
if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  check "wheels" "$(ls "$WHEELS"/*.whl | wc -l) wheels, $(wheel_mib) MiB in $WHEELS" \
    "$WHEELS holds $(wheel_mib) MiB, more than $MAX_WHEEL_MIB MiB" test "$(wheel_mib)" -le $MAX_WHEEL_MIB
else
  echo "  missing  wheels: no wheels in $WHEELS; run \`make gpu-wheels\` where there is network (a machine whose"
  echo "           Python already has every package of bench/gpu/requirements.txt needs none)"
  [ $dry = 1 ] || problems=$((problems + 1))
fi
if "$PYTHON" -c 'import torch' >/dev/null 2>&1; then
  echo "  ok       torch: $("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
  if "$PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' >/dev/null 2>&1; then
    echo "  ok       cuda: $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null)"
  else
    echo "  $([ $dry = 1 ] && echo 'note    ' || echo 'PROBLEM ') cuda: torch sees no CUDA device here"
    [ $dry = 1 ] || problems=$((problems + 1))
  fi
else
  echo "  $([ $dry = 1 ] && echo 'note    ' || echo 'PROBLEM ') torch: $PYTHON cannot import torch (the GPU machine's own is used)"
  [ $dry = 1 ] || problems=$((problems + 1))
fi

echo "plan:"
echo "  1. $PYTHON -m venv --system-site-packages $VENV  (the machine's torch stays in use)"
echo "  2. pip install --no-index --find-links $WHEELS -r bench/gpu/requirements.txt; pip install --no-deps -e ."
echo "  3. pytest -m gpu tests/test_gpu.py  (at most ${TEST_SECONDS} s): fp16/bf16 against fp32, --deterministic"
echo "     repeatability, model, sequential and group offload, the VRAM budget default, an out-of-memory retry,"
echo "     compile, fp8/nf4 quantization, batched sweeps"
echo "  4. python bench/gpu/bench.py  (at most ${BENCH_SECONDS} s): runner against a hand-written diffusers script on"
echo "     random-weight models: SD 1.5 at 512 px, SDXL at 1024 px, FLUX.1 at reduced depth at 1024 px: wall seconds,"
echo "     it/s, ratio, identical pixels (bench.json is written after each case)"
echo "  figures and logs: $OUT"

if [ $dry = 1 ]; then
  echo "dry run: $problems problem(s) in the set-up"
  exit 0
fi
if [ $problems -gt 0 ]; then
  echo "stopping: $problems problem(s) in the set-up" >&2
  exit 1
fi

mkdir -p "$OUT"
"$PYTHON" -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" -r "$HERE/requirements.txt"
"$VENV/bin/python" -m pip install --quiet --no-index --no-deps --no-build-isolation -e "$REPO"
status=0
echo "== gpu tests"
(cd "$REPO" && timeout "$TEST_SECONDS" "$VENV/bin/python" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py) \
  2>&1 | tee "$OUT/tests.log" || status=1
echo "== gpu benchmarks"
(cd "$REPO" && timeout "$BENCH_SECONDS" "$VENV/bin/python" "$HERE/bench.py" --out "$OUT") 2>&1 | tee "$OUT/bench.log" \
  || status=1
exit $status
