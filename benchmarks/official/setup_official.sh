#!/usr/bin/env bash
# Prepares the official SEA, MICRO and MMRec checkouts for a run on an MMRec-format data set:
# applies the small patches of patches/ (device-agnostic code, no torch_scatter, numpy 2) and
# writes the data files with prepare_data.py. See README.md in this folder.
#
#   benchmarks/official/setup_official.sh OFFICIAL_DIR [DATA_ROOT] [DATASET]
#
# OFFICIAL_DIR holds unmodified checkouts SEA/, MICRO/ and MMRec/ at the commits named in
# README.md. Run it once: a second run finds the patches applied and skips them.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OFFICIAL="$(cd "${1:?usage: setup_official.sh OFFICIAL_DIR [DATA_ROOT] [DATASET]}" && pwd)"
DATA_ROOT="${2:-$REPO/../shared/data}"
DATASET="${3:-ml100k}"

for name in SEA MICRO; do
  patch_file="$HERE/patches/$name.patch"
  if [ ! -d "$OFFICIAL/$name" ]; then
    echo "$name: no checkout under $OFFICIAL, skipped"
  elif patch -p1 -R --dry-run -s -f -d "$OFFICIAL/$name" < "$patch_file" > /dev/null 2>&1; then
    echo "$name: patch already applied"
  else
    patch -p1 -N -d "$OFFICIAL/$name" < "$patch_file"
  fi
done
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" python3 "$HERE/prepare_data.py" \
  --official "$OFFICIAL" --data-root "$DATA_ROOT" --dataset "$DATASET"
