#!/usr/bin/env bash
# All official runs on ml100k at once, on one GPU, each as a background job with a wall-clock
# limit; then logs -> JSON, a summary table and the side-by-side figure, packed into ONE tar.gz.
#
#   benchmarks/official/run_all_gpu.sh OFFICIAL_DIR [OUT_DIR]
#
# OFFICIAL_DIR: the prepared folder (setup_official.sh): SEA/, MICRO/, MMRec/ (patched, with
# their data/ml100k) and data/ml100k (the data set, for pyg_multirec's own runs).
# OUT_DIR: where the results go (default: $OUT if set, else runs/official in the repository).
# Written there: official_runs.tar.gz (everything), summary.md and side_by_side.png.
#
# Environment knobs:
#   BUDGET_S   wall-clock limit of every job in seconds (default 420); the script ends about
#              BUDGET_S + 30 s after it starts.
#   JOBS       which jobs to start (default: all of them, see the list below).
#   EXTRA_JOBS more jobs: MMRec grid points, each one more parallel job, named bpr_reg<R>
#              (e.g. bpr_reg1e-2) or lightgcn_l<L>_reg<R> (e.g. lightgcn_l3_reg1e-4).
#   OURS       1 (default) also runs pyg_multirec's counterparts in parallel; 0 skips them.
#   DEVICE     device of pyg_multirec's runs (default cuda).
#   PYTHON     interpreter (default python3).
# Every job runs with CUDA_VISIBLE_DEVICES=0 and at most 2 threads (OMP/MKL/OpenBLAS).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OFFICIAL="$(cd "${1:?usage: run_all_gpu.sh OFFICIAL_DIR [OUT_DIR]}" && pwd)"
FINAL="${2:-${OUT:-$REPO/runs/official}}"
mkdir -p "$FINAL"
FINAL="$(cd "$FINAL" && pwd)"
BUDGET_S="${BUDGET_S:-420}"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
OURS="${OURS:-1}"
DATASET=ml100k
ALL_JOBS="sea bpr lightgcn micro_warm micro_cold"
[ "$OURS" = 1 ] && ALL_JOBS="$ALL_JOBS ours_sea ours_mf ours_lightgcn ours_micro_warm ours_micro_cold"
JOBS="${JOBS:-$ALL_JOBS} ${EXTRA_JOBS:-}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/official_runs.XXXXXX")/official_runs"
LOGS="$WORK/logs"
mkdir -p "$LOGS" "$WORK/json" "$WORK/ours"
export CUDA_VISIBLE_DEVICES=0 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
export NUMEXPR_NUM_THREADS=2 NUMEXPR_MAX_THREADS=2 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

{
  echo "start $(date -u +%FT%TZ)  budget ${BUDGET_S}s  jobs: $JOBS"
  echo "official: $OFFICIAL  repo: $REPO  git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)"
  "$PY" -c "import torch, numpy, scipy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__, 'scipy', scipy.__version__)"
  "$PY" -c "import pandas; print('pandas', pandas.__version__)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
} > "$LOGS/environment.txt" 2>&1

# start NAME DIR COMMAND...: runs COMMAND in DIR in the background, output to logs/NAME.log.
start() {
  local name="$1" dir="$2"
  shift 2
  case " $JOBS " in *" $name "*) ;; *) return 0 ;; esac
  (
    cd "$dir" || exit 1
    local t0=$SECONDS
    timeout -k 15 "$BUDGET_S" "$@" > "$LOGS/$name.log" 2>&1
    local rc=$?
    local why=finished
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && why="stopped by the ${BUDGET_S}s limit"
    echo "$name rc=$rc ($why) after $((SECONDS - t0))s" >> "$LOGS/status.txt"
  ) &
}

MMREC_RUN=("$PY" "$HERE/run_mmrec.py")
# --- official code ---------------------------------------------------------------------------
# SEA: its own configuration (SEA.yaml: lr 1e-4, temp 0.2, ...; main.py: alpha_contrast 0.012,
# ureg 0.006), MMRec protocol of overall.yaml (stopping_step 20, epochs 1000).
start sea "$REPO" "${MMREC_RUN[@]}" --src "$OFFICIAL/SEA/src" -- --model SEA --dataset $DATASET
# MMRec BPR and LightGCN, one configuration each (MMRec would run its whole grid and pick on test).
start bpr "$REPO" "${MMREC_RUN[@]}" --src "$OFFICIAL/MMRec/src" --set "reg_weight=[1.0]" \
  -- --model BPR --dataset $DATASET
start lightgcn "$REPO" "${MMREC_RUN[@]}" --src "$OFFICIAL/MMRec/src" \
  --set "n_layers=[2]" --set "reg_weight=[1e-3]" -- --model LightGCN --dataset $DATASET
for name in $JOBS; do  # extra grid points named in JOBS
  case $name in
    bpr_reg*)
      start "$name" "$REPO" "${MMREC_RUN[@]}" --src "$OFFICIAL/MMRec/src" \
        --set "reg_weight=[${name#bpr_reg}]" -- --model BPR --dataset $DATASET ;;
    lightgcn_l*_reg*)
      layers=${name#lightgcn_l}
      start "$name" "$REPO" "${MMREC_RUN[@]}" --src "$OFFICIAL/MMRec/src" \
        --set "n_layers=[${layers%%_reg*}]" --set "reg_weight=[${name##*_reg}]" \
        -- --model LightGCN --dataset $DATASET ;;
  esac
done
# MICRO: README commands; --verbose 1 evaluates every epoch (default 5) and patience 20 epochs
# matches the MMRec protocol (MICRO's default: 10 evaluations).
MICRO_ARGS=(--dataset $DATASET --gpu_id 0 --verbose 1 --early_stopping_patience 20)
start micro_warm "$OFFICIAL/MICRO/codes" "$PY" main.py "${MICRO_ARGS[@]}"
start micro_cold "$OFFICIAL/MICRO/codes" "$PY" main.py "${MICRO_ARGS[@]}" --core 0 --lr 1e-5

# --- pyg_multirec, same data, same budget ------------------------------------------------------
# MICRO with the official code's values where a flag exists (lambda 0.9, L2 1e-5, its
# D^-1(A+I) backbone graph, negatives from all items; lr, batch, k, tau, beta, layers are
# already the same); no lr decay (no flag).
OURS_ARGS=(train --dataset $DATASET --data-root "$OFFICIAL/data" --device "$DEVICE" --epochs 1000
  --patience 20 --quiet)
MICRO_OFFICIAL=(--skip-lambda 0.9 --reg-weight 1e-5 --backbone-norm rw-self-loop --negatives all)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
case " $JOBS " in  # process the data set once, before five processes race to write its cache
  *" ours_"*) "$PY" -c "from pyg_multirec.datasets import load_dataset as f; f('$DATASET', '$OFFICIAL/data')" \
    >> "$LOGS/environment.txt" 2>&1 ;;
esac
start ours_sea "$REPO" "$PY" examples/sea.py "${OURS_ARGS[@]}" --lr 1e-4 --out "$WORK/ours/sea"  # the official lr
# MF and LightGCN with the configuration of the MMRec jobs above (MMRec's EmbLoss: norm form).
start ours_mf "$REPO" "$PY" examples/mf.py "${OURS_ARGS[@]}" --reg-form norm --reg-weight 1.0 \
  --out "$WORK/ours/mf"
start ours_lightgcn "$REPO" "$PY" examples/lightgcn.py "${OURS_ARGS[@]}" --layers 2 \
  --reg-form norm --reg-weight 1e-3 --out "$WORK/ours/lightgcn"
start ours_micro_warm "$REPO" "$PY" examples/micro.py "${OURS_ARGS[@]}" "${MICRO_OFFICIAL[@]}" \
  --out "$WORK/ours/micro_warm"
start ours_micro_cold "$REPO" "$PY" examples/micro.py "${OURS_ARGS[@]}" "${MICRO_OFFICIAL[@]}" \
  --cold-start --seed 0 --lr 1e-5 --out "$WORK/ours/micro_cold"

wait
echo "all jobs done $(date -u +%FT%TZ)" >> "$LOGS/status.txt"

# --- logs -> JSON, summary, figure, one archive ----------------------------------------------
OFFICIAL_LOGS=()
for name in $JOBS; do
  case $name in ours_*) continue ;; esac
  [ -f "$LOGS/$name.log" ] || continue
  OFFICIAL_LOGS+=("$LOGS/$name.log")
  fmt=mmrec; case $name in micro_*) fmt=micro ;; esac
  "$PY" "$HERE/parse_logs.py" "$LOGS/$name.log" --format $fmt --out "$WORK/json/$name.json" \
    2>> "$LOGS/parse_errors.txt"
done
find "$WORK/ours" -name '*.pt' -delete 2>/dev/null
PAIRS=()
add_pair() {  # TITLE OFFICIAL_JOB OURS_JOB
  local official="$WORK/json/$2.json" ours="$WORK/ours/$3/history.json"
  [ -f "$official" ] || official=-
  [ -f "$ours" ] || ours=-
  PAIRS+=(--pair "$1" "$official" "$ours")
}
add_pair SEA sea sea
add_pair "MICRO warm" micro_warm micro_warm
add_pair "MICRO cold start" micro_cold micro_cold
add_pair "BPR (MMRec) / MF (ours)" bpr mf
add_pair "LightGCN (2 layers)" lightgcn lightgcn
{
  echo "# Official code vs pyg_multirec on $DATASET ($(date -u +%F), budget ${BUDGET_S}s per job)"
  echo
  echo '```'
  cat "$LOGS/environment.txt" "$LOGS/status.txt"
  echo '```'
  echo
  echo "## Official runs: best validation epoch (MICRO's NDCG is its own formula, see DIFFERENCES.md)"
  echo
  [ ${#OFFICIAL_LOGS[@]} -gt 0 ] && "$PY" "$HERE/parse_logs.py" --table "${OFFICIAL_LOGS[@]}" 2>&1
  echo
  echo "## Side by side (valid Recall@20; test Recall@20 at the best valid epoch)"
  echo
  "$PY" "$HERE/plot_side_by_side.py" --out "$WORK/side_by_side.png" --table "${PAIRS[@]}" 2>&1 |
    grep -v '^wrote '
} > "$WORK/summary.md"
cp "$WORK/summary.md" "$FINAL/summary.md"
[ -f "$WORK/side_by_side.png" ] && cp "$WORK/side_by_side.png" "$FINAL/side_by_side.png"
tar -czf "$FINAL/official_runs.tar.gz" -C "$(dirname "$WORK")" official_runs
cat "$FINAL/summary.md"
for name in $JOBS; do  # the last lines of every log, for a quick look at the command's output
  [ -f "$LOGS/$name.log" ] && { echo "--- $name"; tail -n 3 "$LOGS/$name.log" | cut -c1-300; }
done
echo "wrote $FINAL/official_runs.tar.gz $FINAL/summary.md $FINAL/side_by_side.png"
