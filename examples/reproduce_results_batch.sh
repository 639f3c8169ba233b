#!/usr/bin/env bash
# Runs several rows of examples/reproduce_results.py at once under one deadline, then packs
# the rows' folders (SQLite studies, the saved states of unfinished runs, seed runs) into
# OUT_DIR, so that the same rows continue on another machine. Made for a lent machine (one
# GPU, 16 cores, minutes of time, no network): each row is a spec "JOBS DEVICE KIND LABEL",
#
#   TOTAL_S=540 bash examples/reproduce_results_batch.sh OUT_DIR \
#       "5 cuda cold MICRO (LightGCN)" "6 cuda warm MICRO (LightGCN)" "4 cuda warm MICRO (MF)"
#
# then, on the machine that goes on (same --runs path, so the studies' files match):
#
#   cat OUT_DIR/runs.tar.gz.part-* | tar -xzf - -C / && \
#       python examples/reproduce_results.py --tune --only "MICRO (MF)" --skip-cold ...
#
# At the deadline every row gets SIGINT: its running trials are marked interrupted and their
# per-epoch states stay, so the next command continues them from their last epoch.
# Knobs (environment): TOTAL_S (default 540) wall seconds for the whole batch, packing
# included; RUNS (default /work/runs/results) the --runs folder, packed with its absolute
# path; DATA_ROOT (default /work/shared/data); DATA_COPY, a folder holding ml100k/ to copy
# into DATA_ROOT first (the lent machine has no ../shared); RUNS_FROM, a folder whose
# contents are copied into RUNS first (the rows' folders from the machine that ran them
# before, e.g. a carried copy of /work/runs/results); WHEELS, a folder of wheels to
# install first (optuna and its needs); MPS=1 tries the CUDA multi-process service, so that
# the GPU runs the kernels of several processes side by side instead of time-slicing them
# (15 MICRO trainings on an H200: about 1.7 s per epoch each with it, 2026-12-04; 11-17 s
# per epoch in an earlier session that ran about 25 processes without it); EXTRA, more flags
# for every reproduce_results.py command (e.g. --retry-failed); PACK_MB (default 56) the
# most megabytes packed; PYTHON (default python3).
set -uo pipefail
T0=$SECONDS
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FINAL="${1:?usage: reproduce_results_batch.sh OUT_DIR SPEC...}"
shift
mkdir -p "$FINAL" && FINAL="$(cd "$FINAL" && pwd)"
TOTAL_S="${TOTAL_S:-540}"
RUNS="${RUNS:-/work/runs/results}"
DATA_ROOT="${DATA_ROOT:-/work/shared/data}"
PY="${PYTHON:-python3}"
PACK_S=45  # kept at the end for the SIGINT grace period and the packing
PART_SIZE=15M  # each packed file stays under a 16 MiB transfer limit
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/batch.XXXXXX")/logs"
mkdir -p "$LOGS" "$RUNS"
status() { echo "[$((SECONDS - T0)) s] $*" | tee -a "$LOGS/status.txt"; }
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$REPO" || exit 1

if [ -n "${WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || { status "wheels failed"; exit 1; }
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if [ -n "${DATA_COPY:-}" ]; then
  mkdir -p "$DATA_ROOT" && cp -r "$DATA_COPY"/. "$DATA_ROOT"/ && chmod -R u+w "$DATA_ROOT"
fi
if [ -n "${RUNS_FROM:-}" ]; then  # the rows' folders as another machine left them
  cp -r "$RUNS_FROM"/. "$RUNS"/ || { status "cannot copy RUNS_FROM=$RUNS_FROM"; exit 1; }
fi
if [ ! -f "$DATA_ROOT/ml100k/ml100k.inter" ]; then  # every trial would fail on it
  status "no $DATA_ROOT/ml100k/ml100k.inter: DATA_COPY must hold the folder ml100k/ itself"
  exit 1
fi
status "$("$PY" -c 'import torch, optuna, torch_geometric as g; print("torch", torch.__version__,
  "cuda", torch.cuda.is_available(), "optuna", optuna.__version__, "pyg", g.__version__)' 2>&1)"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader | tee -a "$LOGS/status.txt"

cuda_ok() {  # one tiny training step on the GPU, under a short limit
  timeout -k 5 90 "$PY" examples/micro.py train --device cuda --epochs 1 --synthetic-users 50 \
    --synthetic-items 40 --synthetic-interactions 400 --out "$LOGS/smoke" --quiet \
    >> "$LOGS/smoke.log" 2>&1
}
if [[ " $* " == *" cuda "* ]]; then
  if [ "${MPS:-0}" = 1 ] && command -v nvidia-cuda-mps-control > /dev/null; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    nvidia-cuda-mps-control -d && status "MPS started"
    if ! cuda_ok; then  # MPS refused: stop it and use plain contexts
      echo quit | nvidia-cuda-mps-control
      unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
      status "MPS failed its smoke test; stopped"
    fi
  fi
  if cuda_ok; then
    status "cuda smoke test passed"
  else
    status "cuda smoke test FAILED (smoke.log): the rows run on the CPU instead"
    set -- "${@/ cuda / cpu }"
  fi
fi

# The data set is processed once before the rows start (no race on its cache).
"$PY" -c "from pyg_multirec.datasets import load_dataset as f; f('ml100k', '$DATA_ROOT')" \
  >> "$LOGS/status.txt" 2>&1
LEFT=$((TOTAL_S - (SECONDS - T0) - PACK_S))
status "rows start, $LEFT s each"
i=0
for spec in "$@"; do
  read -r jobs device kind label <<< "$spec"
  case "$kind" in
    warm) skip=--skip-cold ;;
    cold) skip=--skip-warm ;;
    *) status "bad spec '$spec': KIND must be warm or cold"; continue ;;
  esac
  i=$((i + 1))
  # shellcheck disable=SC2086
  ( timeout -s INT -k 20 "$LEFT" "$PY" examples/reproduce_results.py --tune --only "$label" \
      "$skip" --jobs "$jobs" --device "$device" --runs "$RUNS" --data-root "$DATA_ROOT" \
      --report "$LOGS/report-$i.md" ${EXTRA:-} > "$LOGS/row-$i.log" 2>&1
    status "row $i ($spec) rc=$?" ) &
done
wait
"$PY" examples/reproduce_results.py --status --runs "$RUNS" > "$LOGS/rows_status.txt" 2>&1
status "rows done"
cat "$LOGS/rows_status.txt"
# Everything but the training states, then as many states as PACK_MB allows: the seed runs'
# first, then the search and confirmation runs with the most epochs saved first (what would
# cost the most to train again: the runs the deadline stopped, the finished best trials kept
# for their seed runs). The states left out are listed in left_behind.txt: their runs start
# again where they continue.
"$PY" - "$RUNS" "${PACK_MB:-56}" > "$LOGS/pack_list.txt" 2> "$LOGS/left_behind.txt" <<'PYEOF'
import sys
from pathlib import Path

from pyg_multirec.checkpoint import TrainingState


def epochs(path):
    try:
        return len(TrainingState.load(path).history)
    except Exception:  # unreadable: the run would start again anyway
        return 0


runs, budget = Path(sys.argv[1]), float(sys.argv[2]) * 2**20
files = [p for p in runs.rglob("*") if p.is_file()]
states = [p for p in files if p.suffix == ".pt"]
states.sort(key=lambda p: ("run_states" in p.parts, -epochs(p) if "run_states" in p.parts else 0))
total = sum(p.stat().st_size for p in files if p.suffix != ".pt")
for p in files:
    if p.suffix != ".pt":
        print(p.relative_to("/"))
for p in states:
    if total + p.stat().st_size <= budget:
        total += p.stat().st_size
        print(p.relative_to("/"))
    else:
        print(p, file=sys.stderr)
PYEOF
cp "$LOGS/left_behind.txt" "$FINAL/left_behind.txt"
tar -czf - -C / -T "$LOGS/pack_list.txt" | split -b "$PART_SIZE" - "$FINAL/runs.tar.gz.part-"
tar -czf "$FINAL/logs.tar.gz" -C "$(dirname "$LOGS")" logs
status "packed: $(du -ch "$FINAL"/runs.tar.gz.part-* | tail -1)"
