#!/usr/bin/env bash
# The official MICRO on the cold-start split of our generated data, one run at a time on one
# CPU thread, each to its early stop: data seed S (export_synthetic.py) = official --seed S.
#
#   benchmarks/official/run_synthetic_cold.sh MICRO_DIR LOG_DIR
#
# MICRO_DIR: the patched official checkout (README.md, sections 1-2). The data of every seed
# is exported first (and checked against a fresh build of the harness's data). LOG_DIR
# receives micro_cold_lr<LR>_s<S>.log and its parsed .json (parse_logs.py).
# Knobs: SEEDS (default "0 1 2"); LRS (default "1e-5 5e-4": the README's cold-start lr,
# then the official default = our example's lr); PATIENCE (default 20; another value is
# added to the log names as _p<PATIENCE>, e.g. PATIENCE=1000 runs all 1000 epochs);
# EXPORT (default 1; 0 skips the export); PYTHON (default python3).
# Official flags: README's cold-start command (--core 0 --lr 1e-5) with --verbose 1 (evaluate
# every epoch) and --early_stopping_patience 20 (the MMRec protocol), as run_all_gpu.sh.
# One run takes about 0.85 s per epoch (0.6 s training + 0.25 s evaluation) on one thread.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MICRO="$(cd "${1:?usage: run_synthetic_cold.sh MICRO_DIR LOG_DIR}" && pwd)"
LOGS="${2:?usage: run_synthetic_cold.sh MICRO_DIR LOG_DIR}"
mkdir -p "$LOGS" && LOGS="$(cd "$LOGS" && pwd)"
SEEDS="${SEEDS:-0 1 2}"
LRS="${LRS:-1e-5 5e-4}"
PATIENCE="${PATIENCE:-20}"
TAG=""
[ "$PATIENCE" = 20 ] || TAG="_p$PATIENCE"
PY="${PYTHON:-python3}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONUNBUFFERED=1
# shellcheck disable=SC2086
[ "${EXPORT:-1}" = 0 ] || PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" \
  "$HERE/export_synthetic.py" --micro "$MICRO" --seed $SEEDS
for lr in $LRS; do
  for s in $SEEDS; do
    name="micro_cold_lr${lr}${TAG}_s${s}"
    echo "$(date -u +%FT%TZ) start $name" >> "$LOGS/status.txt"
    (cd "$MICRO/codes" && "$PY" main.py --dataset "synthetic_s$s" --core 0 --lr "$lr" \
      --seed "$s" --gpu_id 0 --verbose 1 --early_stopping_patience "$PATIENCE") \
      > "$LOGS/$name.log" 2>&1 ||
      echo "$name failed rc=$?" >> "$LOGS/status.txt"
    "$PY" "$HERE/parse_logs.py" "$LOGS/$name.log" --format micro --out "$LOGS/$name.json"
    echo "$(date -u +%FT%TZ) done $name" >> "$LOGS/status.txt"
  done
done
