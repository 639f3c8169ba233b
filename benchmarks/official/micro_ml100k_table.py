"""The tables of ``results/cpu-micro-ml100k``: the official MICRO and ours on ml100k, warm and on
the three cold splits, with paired t-tests across seeds (= cold splits).

    python benchmarks/official/micro_ml100k_table.py [--results DIR]

Reads ``DIR/official/*.log`` (the official code's logs; test Recall@20 at the best valid
epoch, as the code prints it; ``micro_warm.log`` is the code's seed 123,
``micro_warm_seedN.log`` its ``--seed N``, ``micro_cold_sS.log`` seed 123 on cold split S) and
``DIR/ours/<group>-s<seed>/metrics.json`` (pyg_multirec runs, ``python examples/<model>.py
train --out ...``). A group's seeds are paired with the official cold runs by seed: our
``--cold-start --seed S`` and the official ``micro_cold_sS`` use the same
cold split (``prepare_data.py --cold-seed S``).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from parse_logs import MONITOR, best_epoch, parse_log  # its folder: run it as a script

HERE = Path(__file__).resolve().parent
TEST_KEY = "test_recall@20"
#: The official code's default seed (``--seed`` of its ``main.py``): an official log without a
#: ``_seedN`` suffix is this seed; the ``_sS`` of a cold log names the cold split, not a seed.
OFFICIAL_SEED = 123
# The groups each table tests the others against (paired t-test of test Recall@20).
REFERENCES = {
    "warm": ["warm-users", "warm-edges"],
    "cold": ["official micro_cold", "vbpr-cold", "vbpr-cold-warmneg"],
}
SEED = re.compile(r"^(?P<group>.+)[-_]s(?P<seed>\d+)$")
OFFICIAL_TRAINING_SEED = re.compile(r"^(?P<group>.+)_seed(?P<seed>\d+)$")


def official_runs(folder: Path) -> dict[str, dict[int, dict]]:
    """``{group: {seed: {"valid", "test", "best_epoch", "epochs"}}}`` of the official logs."""
    out: dict[str, dict[int, dict]] = {}
    for log in sorted(folder.glob("*.log")):
        match = OFFICIAL_TRAINING_SEED.match(log.stem) or SEED.match(log.stem)
        group, seed = (match["group"], int(match["seed"])) if match else (log.stem, OFFICIAL_SEED)
        records = parse_log(log, "micro")
        best = best_epoch(records)
        out.setdefault(f"official {group}", {})[seed] = {
            "valid": best[MONITOR], "test": best.get(TEST_KEY), "best_epoch": best["epoch"],
            "epochs": len(records),
        }
    return out


def our_runs(folder: Path) -> dict[str, dict[int, dict]]:
    """The same for pyg_multirec's ``metrics.json`` files."""
    out: dict[str, dict[int, dict]] = {}
    for path in sorted(folder.glob("*/metrics.json")):
        match = SEED.match(path.parent.name)
        if match is None:
            continue
        metrics = json.loads(path.read_text())
        epochs = json.loads((path.parent / "history.json").read_text())
        out.setdefault(match["group"], {})[int(match["seed"])] = {
            "valid": metrics["best_valid"]["recall@20"], "test": metrics["test"]["recall@20"],
            "best_epoch": metrics["best_epoch"], "epochs": len(epochs),
        }
    return out


def _mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def paired_p(a: dict[int, dict], b: dict[int, dict]) -> str:
    """Paired t-test of test Recall@20 over the seeds both groups have (``-`` under 2)."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return "-"
    from scipy.stats import ttest_rel

    return f"{ttest_rel([a[s]['test'] for s in seeds], [b[s]['test'] for s in seeds]).pvalue:.3f}"


def table(groups: dict[str, dict[int, dict]], references: list[str]) -> str:
    head = "".join(f" p vs {ref} |" for ref in references)
    lines = [
        "| run | valid R@20 | test R@20 | test R@20 per seed (best epoch / epochs run) |" + head,
        "|---|---|---|---|" + "---|" * len(references),
    ]
    for name, runs in groups.items():
        seeds = sorted(runs)
        per_seed = " / ".join(
            f"{runs[s]['test']:.4f} ({runs[s]['best_epoch']}/{runs[s]['epochs']})" for s in seeds
        )
        cold = "cold" in name
        # Two codes' runs pair up by cold split (the same data), not by a seed number.
        unpaired = name.startswith("official") and not cold
        p = "".join(
            " - |" if name == ref or unpaired else f" {paired_p(runs, groups.get(ref, {}))} |"
            for ref in references
        )
        listed = ",".join(map(str, seeds))
        if name.startswith("official") and cold:
            label = f"seed {OFFICIAL_SEED}; cold splits {listed}"
        else:
            label = f"seed{'s' if len(seeds) > 1 else ''} {listed}"
        lines.append(
            f"| {name} ({label}) "
            f"| {_mean_std([runs[s]['valid'] for s in seeds])} "
            f"| {_mean_std([runs[s]['test'] for s in seeds])} | {per_seed} |" + p
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=HERE / "results" / "cpu-micro-ml100k")
    args = parser.parse_args()
    groups = {**official_runs(args.results / "official"), **our_runs(args.results / "ours")}
    for kind, references in REFERENCES.items():
        chosen = {k: v for k, v in groups.items() if ("cold" in k) == (kind == "cold")}
        print(f"\n{kind}\n\n{table(chosen, references)}")


if __name__ == "__main__":
    main()
