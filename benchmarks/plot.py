"""Plots the seconds per training epoch of ``benchmarks/models.py`` against the number of items.

Usage::

    python benchmarks/plot.py                      # results/models-cpu.json -> time_per_epoch.png
    python benchmarks/plot.py --results R.json --out P.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_RESULTS = RESULTS_DIR / "models-cpu.json"
DEFAULT_OUT = RESULTS_DIR / "time_per_epoch.png"
FIGSIZE = (7.0, 4.5)
DPI = 120


def plot_time_per_epoch(results: Path, out: Path) -> Path:
    """One line per model: seconds per epoch (extrapolated) vs number of items, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results.is_file():
        raise FileNotFoundError(f"--results {results} does not exist")
    payload = json.loads(results.read_text())
    by_model: dict[str, list[tuple[int, float, str]]] = {}
    for entry in payload["results"]:
        by_model.setdefault(entry["model"], []).append(
            (entry["num_items"], entry["epoch_s"], entry["scale"])
        )
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for model, points in by_model.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=model)
    scales = {entry["num_items"]: entry["scale"] for entry in payload["results"]}
    for items, name in scales.items():
        ax.axvline(items, color="0.85", linewidth=0.8, zorder=0)
        ax.annotate(name, (items, 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                    ha="center", va="bottom", color="0.4")
    env = payload["environment"]
    ax.set_yscale("log")
    ax.set_xlabel("number of items")
    ax.set_ylabel(f"seconds per epoch (extrapolated from {payload['batches']} steps)")
    ax.set_title(f"Training time per epoch, {env['device']}, {env['torch_num_threads']} thread(s)"
                 f" (shared, noisy machine)", fontsize=10, pad=14)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    path = plot_time_per_epoch(args.results, args.out)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
