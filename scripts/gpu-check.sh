#!/usr/bin/env bash
# The GPU measurements in one call, on a machine with one CUDA GPU (planned to take under 8 minutes; never run on
# a GPU yet: no GPU was lent to the sessions that wrote it). Writes every table to one folder (default
# runs/gpu-check-<date>/), one file per measurement, plus environment.txt:
#   sta_overhead-sdpa.txt     benchmarks/sta_overhead.py --device cuda --dtype bfloat16 --attn sdpa --quick
#   sta_overhead-fa2.txt      the same with --attn flash_attention_2, where flash-attn imports (else the reason)
#   train_step.txt            benchmarks/train_step.py --device cuda --quick (the tiny preset, float32)
#   train_step-2b.txt         benchmarks/train_step.py --device cuda --dtype bfloat16 --preset qwen2-vl-2b: training
#                             steps (LoRA, and STA + LoRA) of a model of Qwen2-VL-2B's published shape with random
#                             weights, 2 x 16 frames at 336x336, samples/s and peak memory of each arm
#   tests.txt                 the suite's modeling tests (they run on the CPU: the suite has no CUDA tests yet)
# Each command is printed with its exit status; the script exits 1 when any failed.
# Usage: bash scripts/gpu-check.sh [output folder]
#        bash scripts/gpu-check.sh --cpu [output folder]
# --cpu runs the same measurements on the CPU at the smallest shapes (the 2B-shaped model one layer deep, one
# round), to check the script and the benchmarks' code paths on a machine without a GPU (tests/test_benchmarks.py
# runs it); its numbers mean nothing, and it measures no memory (the fresh processes of the memory probes would
# double its time). What --cpu does not exercise: CUDA itself (synchronisation, the max_memory_allocated
# peaks), the memory probes, flash-attention-2, the modeling tests, and the 2B model at full depth and size.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-.venv/bin/python}
cpu=0
if [ "${1:-}" = --cpu ]; then cpu=1; shift; fi
OUT=${1:-runs/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
failed=0

run() {  # run NAME SECONDS COMMAND...: the command's output in $OUT/NAME.txt, its status and time on stdout
  local name=$1 seconds=$2 started=$SECONDS
  shift 2
  [ "$cpu" = 0 ] || seconds=900  # the limits are the GPU run's; a shared CPU can be many times slower
  echo "== $name: $*"
  timeout "$seconds" "$@" >"$OUT/$name.txt" 2>&1
  local status=$?
  [ "$status" = 0 ] || failed=1
  echo "   exit $status after $((SECONDS - started)) s ($OUT/$name.txt)"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || echo "nvidia-smi: not found"
  $PY -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available()); print("transformers", transformers.__version__)'
  $PY -c 'import flash_attn; print("flash-attn", flash_attn.__version__)' 2>&1 | tail -1
  [ "$cpu" = 0 ] || echo "--cpu: every measurement on the CPU at the smallest shapes (a check of the script, not a measurement)"
} >"$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"
if [ "$cpu" = 1 ]; then
  device=cpu
  sta_shape=(--depth 1 --frames 4 --sizes 56 --batches 1 --repeats 1 --no-memory)
  tiny_shape=(--frames 4 --size 56 --batch 1 --repeats 1 --no-memory)
  shape_2b=(--layers 1 --frames 4 --size 28 --batch 1 --repeats 1 --no-memory)
elif ! $PY -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "no CUDA device visible to torch: nothing measured (bash scripts/gpu-check.sh --cpu checks the script)" \
    | tee "$OUT/FAILED.txt"
  exit 1
else
  device=cuda
  sta_shape=(--quick)
  tiny_shape=(--quick)
  shape_2b=(--frames 16 --size 336 --batch 2 --repeats 10)
fi

run sta_overhead-sdpa 180 $PY benchmarks/sta_overhead.py --device $device --dtype bfloat16 --attn sdpa "${sta_shape[@]}"
if $PY -c 'import flash_attn' 2>/dev/null; then
  run sta_overhead-fa2 180 $PY benchmarks/sta_overhead.py --device $device --dtype bfloat16 --attn flash_attention_2 \
    "${sta_shape[@]}"
else
  $PY -c 'import flash_attn' >"$OUT/sta_overhead-fa2.txt" 2>&1
  echo "== sta_overhead-fa2: flash-attn does not import (reason in $OUT/sta_overhead-fa2.txt)"
fi
run train_step 120 $PY benchmarks/train_step.py --device $device "${tiny_shape[@]}"
run train_step-2b 240 $PY benchmarks/train_step.py --device $device --dtype bfloat16 --preset qwen2-vl-2b "${shape_2b[@]}"
if [ "$cpu" = 1 ]; then
  echo "--cpu: the modeling tests are left to the suite" >"$OUT/tests.txt"
else
  run tests 120 $PY -m pytest -q -p no:cacheprovider tests/test_temporal_attention.py tests/test_add_temporal_attention.py
fi
echo "tables in $OUT"
exit $failed
