#!/usr/bin/env bash
# SEA option sweep on ml100k, 3 seeds, MMRec budget (patience 20, <= 1000 epochs), one GPU.
# Usage: bash benchmarks/sea_options_sweep.sh [stage1|all]  (from the repo root; data in
# ../shared/data). JOBS=12 parallel runs; EXTRA="--epochs 300" appends flags to every run;
# DRY=1 only prints the commands. Prints mean+-std over seeds, best valid Recall@20 first.
set -u
declare -A CFG=(
  [mean-linear]="--layer-combine mean --item-encoder linear"      # the previous default
  [sum-mlp]="--layer-combine sum --item-encoder mlp"              # the new default (official)
  [sum-mlp-id]="--layer-combine sum --item-encoder mlp --item-id-embedding"
  [sum-mlp-uw]="--layer-combine sum --item-encoder mlp --user-modality-weights"
)
if [ "${1:-stage1}" = all ]; then CFG+=(
  [sum-linear]="--layer-combine sum --item-encoder linear"
  [mean-mlp]="--layer-combine mean --item-encoder mlp"
  [sum-mlp-fixed]="--layer-combine sum --item-encoder mlp --item-graph-weights fixed"
  [official-id]="--layer-combine sum --item-encoder mlp --user-modality-weights --item-graph-weights fixed --item-id-embedding"
); fi
mkdir -p runs/sea-opts
for name in "${!CFG[@]}"; do for s in 0 1 2; do
  echo "python examples/sea.py train --dataset ml100k --device cuda --quiet --seed $s ${CFG[$name]} ${EXTRA:-} --out runs/sea-opts/$name-s$s > runs/sea-opts/$name-s$s.log 2>&1"
done; done > runs/sea-opts/commands.txt
[ "${DRY:-0}" = 1 ] && { cat runs/sea-opts/commands.txt; exit 0; }
xargs -P "${JOBS:-12}" -I{} bash -c {} < runs/sea-opts/commands.txt
python - <<'PY'
import json, pathlib, statistics as st, collections
rows = collections.defaultdict(list)
for f in sorted(pathlib.Path("runs/sea-opts").glob("*/metrics.json")):
    m = json.loads(f.read_text()); rows[f.parent.name.rsplit("-s", 1)[0]].append(m)
print(f"{'config':14s} {'valid R@20':>16s} {'test R@20':>16s} {'test N@20':>8s} epochs")
for name, ms in sorted(rows.items(), key=lambda kv: -st.mean(m["best_valid"]["recall@20"] for m in kv[1])):
    v = [m["best_valid"]["recall@20"] for m in ms]; t = [m["test"]["recall@20"] for m in ms]
    n = [m["test"]["ndcg@20"] for m in ms]; e = [m["best_epoch"] for m in ms]
    sd = lambda x: st.stdev(x) if len(x) > 1 else 0.0
    print(f"{name:14s} {st.mean(v):.4f}+-{sd(v):.4f}  {st.mean(t):.4f}+-{sd(t):.4f}  {st.mean(n):.4f}  {e} (n={len(ms)})")
PY
