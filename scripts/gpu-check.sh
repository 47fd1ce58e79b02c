#!/usr/bin/env bash
# The GPU measurements in one call, on a machine with one CUDA GPU (planned to take under 8 minutes; never run
# yet: no GPU was lent to the session that wrote it). Writes every table to one folder (default
# runs/gpu-check-<date>/), one file per measurement, plus environment.txt:
#   sta_overhead-sdpa.txt     benchmarks/sta_overhead.py --device cuda --dtype bfloat16 --attn sdpa --quick
#   sta_overhead-fa2.txt      the same with --attn flash_attention_2, where flash-attn imports (else the reason)
#   train_step.txt            benchmarks/train_step.py --device cuda (tiny preset, float32; see below)
#   tests.txt                 the suite's modeling tests (they run on the CPU: the suite has no CUDA tests yet)
# Usage: bash scripts/gpu-check.sh [output folder]
# Not yet covered (benchmarks/train_step.py has no --dtype and no 2B-shaped preset): bfloat16 training steps of a
# 2B-shaped model with and without STA.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-runs/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}

run() {  # run NAME SECONDS COMMAND...: the command's output in $OUT/NAME.txt, its status on stdout
  local name=$1 seconds=$2
  shift 2
  echo "== $name: $*"
  timeout "$seconds" "$@" >"$OUT/$name.txt" 2>&1
  local status=$?
  echo "   exit $status ($OUT/$name.txt)"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not found"
  $PY -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available()); print("transformers", transformers.__version__)'
  $PY -c 'import flash_attn; print("flash-attn", flash_attn.__version__)' 2>&1 | tail -1
} >"$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"
if ! $PY -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "no CUDA device visible to torch: nothing measured" | tee "$OUT/FAILED.txt"
  exit 1
fi

run sta_overhead-sdpa 180 $PY benchmarks/sta_overhead.py --device cuda --dtype bfloat16 --attn sdpa --quick
if $PY -c 'import flash_attn' 2>/dev/null; then
  run sta_overhead-fa2 180 $PY benchmarks/sta_overhead.py --device cuda --dtype bfloat16 --attn flash_attention_2 --quick
else
  $PY -c 'import flash_attn' >"$OUT/sta_overhead-fa2.txt" 2>&1
  echo "== sta_overhead-fa2: flash-attn does not import (reason in $OUT/sta_overhead-fa2.txt)"
fi
run train_step 120 $PY benchmarks/train_step.py --device cuda --quick
run tests 120 $PY -m pytest -q -p no:cacheprovider tests/test_temporal_attention.py tests/test_add_temporal_attention.py
echo "tables in $OUT"
