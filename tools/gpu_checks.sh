#!/usr/bin/env bash
# The GPU machine's checks for one round (see ../shared/device/README.md): run from the
# project root there, after `source .device/setup.sh`, with the extension built here
# (python/ferrograd/_core.abi3.so carried along) and PYTHONPATH=$PWD/python.
#
#   tools/gpu_checks.sh tests      # CUDA tests; 16-core determinism of rust and native
#   tools/gpu_checks.sh memcheck   # compute-sanitizer memcheck over the CUDA tests
#   tools/gpu_checks.sh racecheck  # racecheck over the shared-memory kernels' tests
#   tools/gpu_checks.sh quick      # all of it cut down to fit one call
#
# Logs go to ${OUT:-.}/gpu_<part>.log; each part stops at 9 minutes (timeout: exit 124),
# so that it fits in one 10-minute call; the log says how far it got.
set -uo pipefail
part=${1:?usage: tools/gpu_checks.sh tests|memcheck|racecheck|quick}
log=${OUT:-.}/gpu_${part}.log
export HYPOTHESIS_PROFILE=ci
# the shared-memory kernels: attention, the norms, softmax, reductions (racecheck's scope)
SHARED_MEM_TESTS="tests/test_attention.py tests/test_norm.py tests/test_softmax.py tests/test_reduce.py"
case $part in
  tests)
    { nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; nproc
      python3 -m pytest -m cuda tests -q -p no:cacheprovider 2>&1 | tail -25
      echo "== determinism on $(nproc) cores: rayon 1 vs 16 threads, 2 processes each"
      python3 -m ferrograd.testing.soak --engines rust,native --steps 300 --threads 1,16
      python3 -m ferrograd.testing.soak --engines rust --algo winograd --steps 300 --threads 1,16
    } > "$log" 2>&1 ;;
  memcheck)
    timeout 540 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
      python3 -m pytest -m cuda tests -q -p no:cacheprovider -x > "$log" 2>&1
    echo "exit $?" >> "$log" ;;
  racecheck)
    timeout 540 compute-sanitizer --tool racecheck --error-exitcode 9 --print-limit 20 \
      python3 -m pytest -m cuda $SHARED_MEM_TESTS -q -p no:cacheprovider -x > "$log" 2>&1
    echo "exit $?" >> "$log" ;;
  quick)  # one call when device time is short: each check capped, together under 10 min
    { nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
      echo "== CUDA tests"; timeout 200 python3 -m pytest -m cuda tests -q -p no:cacheprovider 2>&1 | tail -15
      echo "== memcheck (shared-memory kernels' tests)"
      timeout 170 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
        python3 -m pytest -m cuda $SHARED_MEM_TESTS tests/test_determinism.py -q -p no:cacheprovider 2>&1 | tail -8
      echo "memcheck exit ${PIPESTATUS[0]}"
      echo "== racecheck (attention, softmax)"
      timeout 150 compute-sanitizer --tool racecheck --error-exitcode 9 --print-limit 20 \
        python3 -m pytest -m cuda tests/test_attention.py tests/test_softmax.py -q -p no:cacheprovider 2>&1 | tail -8
      echo "racecheck exit ${PIPESTATUS[0]}"
      echo "== determinism on $(nproc) cores"
      timeout 40 python3 -m ferrograd.testing.soak --engines rust,native --steps 200 --threads 1,16
    } > "$log" 2>&1 ;;
  *) echo "unknown part $part"; exit 2 ;;
esac
tail -30 "$log"
