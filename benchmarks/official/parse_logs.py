"""Turns the per-epoch log of an official run into JSON: one record per evaluated epoch.

    python benchmarks/official/parse_logs.py LOG [--out FILE.json] [--summary]
    python benchmarks/official/parse_logs.py --table LOG [LOG ...]

Two log formats are recognised (``--format auto`` tells them apart):

* ``mmrec``: the logger of MMRec and of its forks (SEA). Per epoch: ``epoch N training [time:
  Ts, train loss: L]``, ``epoch N evaluating [...]``, then ``valid result:`` and ``test
  result:`` each followed by a line ``recall@10: 0.0123    ndcg@10: ...``. A log holding
  several configurations of an MMRec grid (``=========i/n: Parameters:...``) gets a
  ``config`` field (the ``Parameters`` text) in every record.
* ``micro``: MICRO's ``codes/main.py``. Per evaluated epoch: ``Epoch N [Ts + Es]:
  train==[...], recall=[R@10, R@20], precision=[...], hit=[...], ndcg=[N@10, N@20]``
  (validation), followed by ``Test_Recall@20: X`` only when validation improved (MICRO
  evaluates the test split only then).

Each record: ``epoch`` (1-based: the number of training epochs done, as in pyg_multirec's
``history.json``; both official codes print 0-based numbers), ``train_seconds``,
``train_loss``, ``valid_<metric>@<k>`` and ``test_<metric>@<k>`` for the metrics the log
holds. MICRO's ``ndcg`` is its own formula (the ideal DCG is taken from the hits of the
returned list, not from the user's held-out items), so it is not comparable with MMRec's or
pyg_multirec's NDCG; see ``DIFFERENCES.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Optional

FORMATS = ("auto", "mmrec", "micro")
MONITOR = "valid_recall@20"

_MMREC_TRAIN = re.compile(
    r"epoch (\d+) training \[time: ([\d.]+)s, (?:train loss: ([-\d.naninf]+)|[^\]]*)\]"
)
_MMREC_RESULT_HEADER = re.compile(r"\b(valid|test) result:\s*$")
_MMREC_CONFIG = re.compile(r"=========(\d+)/(\d+): Parameters:(.*?)=======")
_METRIC_PAIR = re.compile(r"([a-z0-9]+@\d+): ([-\d.eE]+|nan)")
_MICRO_EPOCH = re.compile(r"Epoch (\d+) \[([\d.]+)s(?: \+ ([\d.]+)s)?\]: train==\[([-\d.naninf]+)")
_MICRO_LIST = re.compile(r"(recall|precision|hit|ndcg)=\[([-\d.eE]+), ([-\d.eE]+)\]")
_MICRO_TEST = re.compile(r"Test_Recall@(\d+): ([-\d.eE]+)")
MICRO_KS = (10, 20)  # MICRO's default --Ks
MICRO_METRIC_NAMES = {"recall": "recall", "precision": "precision", "hit": "hit", "ndcg": "ndcg"}


def detect_format(text: str) -> str:
    if _MICRO_EPOCH.search(text):
        return "micro"
    if _MMREC_TRAIN.search(text):
        return "mmrec"
    raise ValueError(
        "unknown log format: no MMRec 'epoch N training' line and no MICRO 'Epoch N [' line"
    )


def _number(text: Optional[str]) -> Optional[float]:
    return None if text is None else float(text)


def parse_mmrec(lines: list[str]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    current: Optional[dict[str, Any]] = None
    config: Optional[str] = None
    pending: Optional[str] = None  # "valid" or "test": the next line holds its metrics
    for line in lines:
        if pending is not None:
            pairs = _METRIC_PAIR.findall(line)
            if pairs and current is not None:
                for key, value in pairs:
                    current[f"{pending}_{key}"] = float(value)
            pending = None
            continue
        match = _MMREC_CONFIG.search(line)
        if match:
            config = match.group(3).strip()
            continue
        match = _MMREC_TRAIN.search(line)
        if match:
            current = {
                "epoch": int(match.group(1)) + 1,
                "train_seconds": float(match.group(2)),
                "train_loss": _number(match.group(3)),
            }
            if config is not None:
                current["config"] = config
            records.append(current)
            continue
        match = _MMREC_RESULT_HEADER.search(line)
        if match:
            pending = match.group(1)
    return [r for r in records if MONITOR in r]


def parse_micro(lines: list[str]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for line in lines:
        match = _MICRO_EPOCH.search(line)
        if match:
            lists = _MICRO_LIST.findall(line)
            if not lists:  # an epoch without evaluation (--verbose > 1)
                continue
            record: dict[str, Any] = {
                "epoch": int(match.group(1)) + 1,
                "train_seconds": float(match.group(2)),
                "eval_seconds": _number(match.group(3)),
                "train_loss": float(match.group(4)),
            }
            for name, at_first, at_second in lists:
                for k, value in zip(MICRO_KS, (at_first, at_second)):
                    record[f"valid_{MICRO_METRIC_NAMES[name]}@{k}"] = float(value)
            records.append(record)
            continue
        match = _MICRO_TEST.search(line)
        if match and records:
            records[-1][f"test_recall@{match.group(1)}"] = float(match.group(2))
    return records


def parse_log(path: str | Path, fmt: str = "auto") -> list[dict[str, Any]]:
    """The per-epoch records of the log at :obj:`path` (see the module docstring)."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS} (got {fmt!r})")
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if fmt == "auto":
        fmt = detect_format(text)
    lines = text.splitlines()
    return parse_mmrec(lines) if fmt == "mmrec" else parse_micro(lines)


def best_epoch(records: list[dict[str, Any]], monitor: str = MONITOR) -> Optional[dict[str, Any]]:
    """The record of the first epoch with the highest :obj:`monitor` (what early stopping on
    validation keeps), or ``None`` for an empty list. For MICRO the test figures of that
    record are the ones its code prints."""
    scored = [r for r in records if monitor in r]
    if not scored:
        return None
    top = max(r[monitor] for r in scored)
    return next(r for r in scored if r[monitor] == top)


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from a ``.json`` list (this script's output, or pyg_multirec's
    ``history.json``) or, for any other file, from parsing it as a log."""
    path = Path(path)
    if path.suffix == ".json":
        records = json.loads(path.read_text())
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of per-epoch records")
        return records
    return parse_log(path)


def table(paths: list[str], fmt: str = "auto") -> str:
    """A Markdown table: per log (and per configuration of an MMRec grid), the epochs
    evaluated, the best-valid epoch, its valid and test Recall@20 and NDCG@20."""
    lines = [
        "| log | configuration | epochs | best epoch | valid R@20 | valid N@20 | test R@20 "
        "| test N@20 |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(record: dict[str, Any], key: str) -> str:
        return f"{record[key]:.4f}" if key in record else "-"

    for path in paths:
        try:
            records = parse_log(path, fmt)
        except (OSError, ValueError) as error:
            lines.append(f"| {Path(path).stem} | ({error}) | 0 | - | - | - | - | - |")
            continue
        configs = list(dict.fromkeys(r.get("config", "") for r in records)) or [""]
        for config in configs:
            rows = [r for r in records if r.get("config", "") == config]
            best = best_epoch(rows)
            if best is None:
                lines.append(f"| {Path(path).stem} | {config} | 0 | - | - | - | - | - |")
                continue
            lines.append(
                f"| {Path(path).stem} | {config} | {len(rows)} | {best['epoch']} | "
                f"{cell(best, MONITOR)} | {cell(best, 'valid_ndcg@20')} | "
                f"{cell(best, 'test_recall@20')} | {cell(best, 'test_ndcg@20')} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", nargs="+", help="one log (several with --table)")
    parser.add_argument("--format", choices=FORMATS, default="auto")
    parser.add_argument("--out", help="write the JSON here instead of standard output")
    parser.add_argument(
        "--summary", action="store_true", help="print epochs and the best-valid record instead"
    )
    parser.add_argument(
        "--table", action="store_true", help="print a Markdown table of the best epochs of the logs"
    )
    args = parser.parse_args()
    if args.table:
        print(table(args.log, args.format))
        return
    if len(args.log) != 1:
        parser.error("give one log (or --table)")
    log = args.log[0]
    records = parse_log(log, args.format)
    if args.summary:
        best = best_epoch(records)
        print(json.dumps({"log": log, "epochs": len(records), "best": best}, indent=1))
        return
    text = json.dumps(records, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
