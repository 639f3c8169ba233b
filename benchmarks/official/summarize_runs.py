"""Per-seed summary of official MICRO runs (logs of ``run_synthetic_cold.sh``) as one JSON.

    python benchmarks/official/summarize_runs.py --out FILE.json [--curves CURVES.json] LOG ...

For every log: the best-validation epoch (the first with the highest valid Recall@20, the
epoch whose test figures MICRO prints), its valid and test Recall@20 and NDCG@20 (MICRO's own
NDCG formula, see ``DIFFERENCES.md``), the epochs run, the mean training and evaluation
seconds per epoch and whether the run ended by itself (``complete``: early stop, or all its
epochs) or was cut (killed, still running). Then the mean and sample standard deviation
(``ddof=1``) of valid and test Recall@20 over the complete runs, per group of logs that
differ only by their ``_s<seed>`` suffix. ``--curves`` also writes every run's per-epoch
valid Recall@20 and its test Recall@20 where MICRO evaluated it, compactly (:func:`curves`).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

from parse_logs import MONITOR, best_epoch, parse_log  # its folder: run it as a script

TEST_KEY = "test_recall@20"
# MICRO's main.py prints this when the patience is used up, and the final test dict (a line
# starting with "{'precision'") whenever its epoch loop ends by itself.
EARLY_STOP_MARK = "#####Early stop! #####"
FINAL_DICT_MARK = "{'precision'"
_SEED_SUFFIX = re.compile(r"_s(\d+)$")
_NAMESPACE_LR = re.compile(r"\blr=([-\d.eE]+)")
_NAMESPACE_EPOCHS = re.compile(r"\bepoch=(\d+)")


def summarize_log(path: Path) -> dict[str, Any]:
    """The per-run figures of one MICRO log (see the module docstring)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    records = parse_log(path, "micro")
    best = best_epoch(records)
    lr, max_epochs = _NAMESPACE_LR.search(text), _NAMESPACE_EPOCHS.search(text)
    out: dict[str, Any] = {
        "log": path.name,
        "lr": float(lr.group(1)) if lr else None,
        "max_epochs": int(max_epochs.group(1)) if max_epochs else None,
        "epochs_run": len(records),
        "complete": EARLY_STOP_MARK in text or FINAL_DICT_MARK in text,
        "early_stopped": EARLY_STOP_MARK in text,
    }
    if best is not None:
        out.update(
            best_epoch=best["epoch"],
            valid_recall_at_20=best[MONITOR],
            valid_ndcg_at_20_micro_formula=best.get("valid_ndcg@20"),
            test_recall_at_20=best.get(TEST_KEY),
        )
        train = [r["train_seconds"] for r in records]
        evals = [r["eval_seconds"] for r in records if r.get("eval_seconds") is not None]
        out["train_s_per_epoch"] = round(statistics.fmean(train), 3)
        out["eval_s_per_epoch"] = round(statistics.fmean(evals), 3) if evals else None
    return out


def mean_std(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 4), "std": round(std, 4), "n": len(values)}


def summarize(paths: list[Path]) -> dict[str, Any]:
    runs = [summarize_log(p) for p in paths]
    groups: dict[str, list[dict[str, Any]]] = {}
    for path, run in zip(paths, runs):
        match = _SEED_SUFFIX.search(path.stem)
        run["seed"] = int(match.group(1)) if match else None
        groups.setdefault(_SEED_SUFFIX.sub("", path.stem), []).append(run)
    summary = {}
    for name, members in groups.items():
        done = [r for r in members if r["complete"] and "valid_recall_at_20" in r]
        summary[name] = {
            "seeds_complete": [r["seed"] for r in done],
            "seeds_cut": [r["seed"] for r in members if r not in done],
            "valid_recall_at_20": mean_std([r["valid_recall_at_20"] for r in done]),
            "test_recall_at_20": mean_std(
                [r["test_recall_at_20"] for r in done if r.get("test_recall_at_20") is not None]
            ),
        }
    return {"runs": runs, "summary": summary}


def curves(paths: list[Path]) -> dict[str, dict[str, list]]:
    """Per log (by file stem): ``epoch`` and ``valid_recall@20`` lists, and ``test_recall@20``
    as ``[epoch, value]`` pairs (MICRO evaluates the test split only when validation
    improves)."""
    out = {}
    for path in paths:
        records = parse_log(path, "micro")
        out[path.stem] = {
            "epoch": [r["epoch"] for r in records],
            MONITOR: [r[MONITOR] for r in records],
            TEST_KEY: [[r["epoch"], r[TEST_KEY]] for r in records if TEST_KEY in r],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    parser.add_argument("--curves", type=Path, help="also write the per-epoch curves here")
    args = parser.parse_args()
    if args.curves:
        args.curves.parent.mkdir(parents=True, exist_ok=True)
        lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in curves(args.log).items()]
        args.curves.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    text = json.dumps(summarize(args.log), indent=1) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
