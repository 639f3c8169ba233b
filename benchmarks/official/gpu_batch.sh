#!/usr/bin/env bash
# One GPU session's batch (a lent machine with one GPU and 16 cores, minutes of time): the
# CUDA tests, the GPU scale benchmark, then every training job at once under one deadline:
# the official-vs-ours side-by-side (run_all_gpu.sh), a 3-seed sweep of SEA's faithful
# options and the cold-start comparison MICRO vs VBPR (3 seeds). Everything is packed into
# a few files in OUT_DIR.
#
#   bash benchmarks/official/gpu_batch.sh OFFICIAL_DIR [OUT_DIR]
#
# OFFICIAL_DIR as for run_all_gpu.sh (its data/ml100k is also the data of our runs).
# Knobs: TOTAL_S (default 540) wall-clock seconds for the whole batch; SCALE_S (default 60)
# the share of the scale benchmark, run before the training jobs so that its timings are
# not disturbed by them; PYTHON (default python3).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OFFICIAL="$(cd "${1:?usage: gpu_batch.sh OFFICIAL_DIR [OUT_DIR]}" && pwd)"
FINAL="${2:-${OUT:-$REPO/runs/gpu_batch}}"
mkdir -p "$FINAL" && FINAL="$(cd "$FINAL" && pwd)"
TOTAL_S="${TOTAL_S:-540}"
SCALE_S="${SCALE_S:-60}"
PY="${PYTHON:-python3}"
T0=$SECONDS
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_batch.XXXXXX")/gpu_batch"
mkdir -p "$WORK/logs"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export CUDA_VISIBLE_DEVICES=0
cd "$REPO" || exit 1

# 1. CUDA tests (in the background: they need little GPU time) and the scale benchmark alone.
( OMP_NUM_THREADS=2 timeout -k 10 "$((TOTAL_S - 30))" "$PY" -m pytest -q -p no:cacheprovider \
    -k cuda tests/losses tests/nn tests/test_train.py > "$WORK/logs/cuda_tests.log" 2>&1;
  echo "cuda tests rc=$?" >> "$WORK/logs/status.txt" ) &
OMP_NUM_THREADS=8 timeout -k 10 "$SCALE_S" "$PY" benchmarks/scale.py --device cuda \
  --sizes 10k,100k,1m --batches 10 > "$WORK/logs/scale_cuda.log" 2>&1
echo "scale rc=$? after $((SECONDS - T0))s" >> "$WORK/logs/status.txt"
cp benchmarks/results/scale-cuda.json "$WORK/" 2>/dev/null

# 2. All training jobs at once, each stopped at the common deadline (the data set is
# processed once first, so that the jobs do not race to write its cache).
"$PY" -c "from pyg_multirec.datasets import load_dataset as f; f('ml100k', '$OFFICIAL/data')" \
  >> "$WORK/logs/status.txt" 2>&1
LEFT=$((TOTAL_S - (SECONDS - T0) - 40))  # keep time to pack the results
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
OURS_DATA=(--dataset ml100k --data-root "$OFFICIAL/data" --device cuda --quiet)
job() {  # NAME COMMAND...: one background training job under the deadline
  local name="$1"
  shift
  ( timeout -k 10 "$LEFT" "$@" > "$WORK/logs/$name.log" 2>&1
    echo "$name rc=$?" >> "$WORK/logs/status.txt" ) &
}
# SEA's faithful options, 3 seeds each (seed 0 of the defaults is run_all_gpu.sh's ours_sea).
for s in 1 2; do
  job "sea-default-s$s" "$PY" examples/sea.py train "${OURS_DATA[@]}" --seed "$s" \
    --out "$WORK/sweep/sea-default-s$s"
done
for s in 0 1 2; do
  job "sea-id-s$s" "$PY" examples/sea.py train "${OURS_DATA[@]}" --seed "$s" \
    --item-id-embedding --out "$WORK/sweep/sea-id-s$s"
done
# Cold start (MICRO's protocol): MICRO with the example's defaults, and at the official
# cold-start lr 1e-5, vs VBPR with its defaults and with negatives from warm items only.
for s in 0 1 2; do
  job "cold-micro-s$s" "$PY" examples/micro.py train "${OURS_DATA[@]}" --cold-start --seed "$s" \
    --out "$WORK/cold/micro-s$s"
  job "cold-vbpr-s$s" "$PY" examples/vbpr.py train "${OURS_DATA[@]}" --cold-start --seed "$s" \
    --out "$WORK/cold/vbpr-s$s"
  job "cold-vbpr-warmneg-s$s" "$PY" examples/vbpr.py train "${OURS_DATA[@]}" --cold-start \
    --seed "$s" --negatives warm --out "$WORK/cold/vbpr-warmneg-s$s"
done
job "cold-micro-lr1e-5-s0" "$PY" examples/micro.py train "${OURS_DATA[@]}" --cold-start --seed 0 \
  --lr 1e-5 --out "$WORK/cold/micro-lr1e-5-s0"
# The side-by-side with the official code (its own jobs, same deadline).
BUDGET_S="$LEFT" bash "$HERE/run_all_gpu.sh" "$OFFICIAL" "$FINAL" > "$WORK/logs/run_all_gpu.log" 2>&1
wait
echo "all done after $((SECONDS - T0))s" >> "$WORK/logs/status.txt"

find "$WORK" -name '*.pt' -delete
tar -czf "$FINAL/gpu_batch.tar.gz" -C "$(dirname "$WORK")" gpu_batch
cat "$WORK/logs/status.txt"
tail -n 5 "$WORK/logs/cuda_tests.log" "$WORK/logs/scale_cuda.log"
