"""Validation Recall@20 per epoch, official code vs pyg_multirec, one panel per model.

    python benchmarks/official/plot_side_by_side.py \
        --pair SEA runs/official/json/sea.json runs/sea/history.json \
        --pair "MICRO (warm)" runs/official/logs/micro_warm.log runs/micro/history.json \
        --out docs/figures/side_by_side.png

Each ``--pair TITLE OFFICIAL OURS`` is one panel. OFFICIAL and OURS are a ``.json`` list of
per-epoch records (``parse_logs.py`` output, or the ``history.json`` written by
``python examples/<model>.py train --out DIR``) or an official log (parsed on the fly); ``-``
leaves a side out. The best-validation epoch of each curve is marked, and the legend gives its
validation Recall@20 and, where the record has it, the test Recall@20 of that epoch
(pyg_multirec evaluates the test split once, after training: it is read from the
``metrics.json`` next to ``history.json`` when there is one). ``--table`` also prints these
figures as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parse_logs import MONITOR, best_epoch, load_records  # noqa: E402

TEST_KEY = "test_recall@20"
NONE = "-"
PANEL_WIDTH, PANEL_HEIGHT = 4.2, 3.2  # inches
MAX_COLUMNS = 3


def ours_test(path: Path) -> Optional[float]:
    """pyg_multirec's test Recall@20 at the best-validation epoch, from ``metrics.json``."""
    metrics = path.parent / "metrics.json"
    if path.name != "history.json" or not metrics.is_file():
        return None
    test = json.loads(metrics.read_text()).get("test", {})
    return test.get("recall@20")


def curve(path: str) -> Optional[dict[str, Any]]:
    if path == NONE:
        return None
    records = [r for r in load_records(path) if MONITOR in r]
    best = best_epoch(records)
    test = best.get(TEST_KEY) if best is not None else None
    if test is None:
        test = ours_test(Path(path))
    return {
        "epochs": [r["epoch"] for r in records],
        "valid": [r[MONITOR] for r in records],
        "best": best,
        "test": test,
        "path": path,
    }


def label(side: str, data: dict[str, Any]) -> str:
    best = data["best"]
    if best is None:
        return f"{side} (no epoch)"
    text = f"{side}: best valid {best[MONITOR]:.4f} @ {best['epoch']}"
    if data["test"] is not None:
        text += f", test {data['test']:.4f}"
    return text


def plot(panels: list[tuple[str, Optional[dict], Optional[dict]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(MAX_COLUMNS, len(panels))
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(
        rows, columns, figsize=(PANEL_WIDTH * columns, PANEL_HEIGHT * rows), squeeze=False
    )
    for ax, (title, official, ours) in zip(axes.flat, panels):
        for side, data, style in (("official", official, "C0"), ("ours", ours, "C1")):
            if data is None or not data["epochs"]:
                continue
            ax.plot(data["epochs"], data["valid"], color=style, lw=1.2, label=label(side, data))
            best = data["best"]
            ax.plot([best["epoch"]], [best[MONITOR]], "o", color=style, ms=4)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("valid Recall@20")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    print(f"wrote {out}")


def table(panels: list[tuple[str, Optional[dict], Optional[dict]]]) -> str:
    lines = [
        "| model | side | epochs run | best valid epoch | valid R@20 | test R@20 |",
        "|---|---|---|---|---|---|",
    ]
    for title, official, ours in panels:
        for side, data in (("official", official), ("ours", ours)):
            if data is None:
                continue
            best = data["best"]
            if best is None:
                lines.append(f"| {title} | {side} | 0 | - | - | - |")
                continue
            test = f"{data['test']:.4f}" if data["test"] is not None else "-"
            lines.append(
                f"| {title} | {side} | {len(data['epochs'])} | {best['epoch']} | "
                f"{best[MONITOR]:.4f} | {test} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pair", nargs=3, action="append", required=True, metavar=("TITLE", "OFFICIAL", "OURS")
    )
    parser.add_argument("--out", default="docs/figures/side_by_side.png")
    parser.add_argument("--table", action="store_true", help="also print a Markdown table")
    args = parser.parse_args()
    panels = []
    for title, official, ours in args.pair:
        panels.append((title, curve_or_warn(official), curve_or_warn(ours)))
    plot(panels, Path(args.out))
    if args.table:
        print(table(panels))


def curve_or_warn(path: str) -> Optional[dict[str, Any]]:
    """:func:`curve`, or ``None`` with a warning when the file is missing or unreadable (a job
    that did not start must not cost the other panels)."""
    try:
        return curve(path)
    except (OSError, ValueError) as error:
        print(f"warning: {path}: {error}", file=sys.stderr)
        return None


if __name__ == "__main__":
    main()
