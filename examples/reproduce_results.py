"""Regenerates every table of ``docs/results.md``.

Trains each model configuration for several seeds on each dataset with the shared
harness (model selection on valid Recall@20, test metrics at the best valid epoch),
then rewrites the part of ``docs/results.md`` between the table markers. Finished
runs are kept under ``--runs`` and skipped when the command is run again, so a long
job can be continued.

    python examples/reproduce_results.py                      # everything (hours on a CPU)
    python examples/reproduce_results.py --datasets ml100k --seeds 0 --max-epochs 50
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
from pathlib import Path

import torch

from pyg_multirec.experiment import default_data_root

HERE = Path(__file__).resolve().parent
START, END = "<!-- tables:start -->", "<!-- tables:end -->"
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")

#: (label, example script, extra flags) of the warm-start table.
WARM = [
    ("MF-BPR", "mf", []),
    ("LightGCN", "lightgcn", []),
    ("VBPR", "vbpr", []),
    ("VBPR + SEA", "vbpr", ["--sea"]),
    ("MICRO (MF)", "micro", ["--backbone", "mf"]),
    ("MICRO (LightGCN)", "micro", ["--backbone", "lightgcn"]),
    ("SEA-a (SoloSim + CLUB)", "sea", ["--variant", "a"]),
    ("SEA-b (SoloSim + neg. L2)", "sea", ["--variant", "b"]),
    ("SEA-c (InfoNCE + CLUB)", "sea", ["--variant", "c"]),
    ("SEA-d (InfoNCE + neg. L2)", "sea", ["--variant", "d"]),
    ("SEA w/o distancing", "sea", ["--align", "solosim", "--distance", "none"]),
    ("SEA w/o alignment", "sea", ["--align", "none", "--distance", "club"]),
    ("SEA w/o both", "sea", ["--align", "none", "--distance", "none"]),
]
#: The cold-start table (MICRO 4.1.3 protocol).
COLD = [
    ("MF-BPR", "mf", []),
    ("LightGCN", "lightgcn", []),
    ("VBPR", "vbpr", []),
    ("MICRO (LightGCN)", "micro", ["--backbone", "lightgcn"]),
    ("SEA-a", "sea", ["--variant", "a"]),
]


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")


def run_one(script: str, flags: list[str], dataset: str, seed: int, out: Path, args) -> dict:
    """Trains one configuration (or reads its finished result) and returns metrics.json."""
    metrics_file = out / "metrics.json"
    if metrics_file.is_file():
        return json.loads(metrics_file.read_text())
    module = importlib.import_module(script)  # run as a script, examples/ is on sys.path
    argv = [
        "--dataset", dataset, "--data-root", args.data_root, "--seed", str(seed),
        "--epochs", str(args.max_epochs), "--patience", str(args.patience),
        "--out", str(out), "--device", args.device, "--quiet", *flags,
    ]  # fmt: skip
    if args.lr is not None:
        argv += ["--lr", str(args.lr)]
    tic = time.perf_counter()
    module.run_example(script, module.build, module.add_arguments,
                       getattr(module, "DEFAULTS", None), argv=argv)  # fmt: skip
    print(f"  {script} {' '.join(flags)} seed {seed}: {time.perf_counter() - tic:.0f}s", flush=True)
    return json.loads(metrics_file.read_text())


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _on_gpu(run: dict) -> bool:
    return str(run.get("config", {}).get("device", "cpu")).startswith("cuda")


def table(rows: list[tuple[str, list[dict]]]) -> str:
    head = "| model | " + " | ".join(m.replace("recall", "R").replace("ndcg", "N") for m in METRICS)
    head += " | valid R@20 | seeds | best epoch | s/epoch (CPU) | s/epoch (GPU) |\n|---"
    head += "|---" * (len(METRICS) + 5) + "|\n"
    if not any(runs for _, runs in rows):
        return "(no finished runs)\n"
    lines = []
    for label, runs in rows:
        if not runs:
            continue
        cells = [_cell([r["test"][m] for r in runs]) for m in METRICS]
        cells.append(_cell([r["best_valid"]["recall@20"] for r in runs]))
        cells.append(str(len(runs)))
        cells.append(" / ".join(str(r["best_epoch"]) for r in runs))
        for on_gpu in (False, True):  # timings only make sense per kind of device
            times = [r["seconds_per_epoch"] for r in runs if _on_gpu(r) == on_gpu]
            cells.append(f"{statistics.mean(times):.2f}" if times else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml100k,synthetic")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--data-root", default=default_data_root())
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--lr", type=float, default=None, help="one learning rate for every model "
        "(default: each example's own default)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--tables-only", action="store_true",
                        help="only rebuild the tables from finished runs")  # fmt: skip
    parser.add_argument("--runs", default="runs/results", help="where finished runs are kept")
    parser.add_argument("--report", default=str(HERE.parent / "docs" / "results.md"))
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--skip-warm", action="store_true")
    parser.add_argument("--only", default=None, help="comma-separated labels to run")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    seeds = [int(s) for s in args.seeds.split(",")]
    only = set(args.only.split(",")) if args.only else None
    sections = []
    tables = [] if args.skip_warm else [("warm", WARM, [])]
    tables += [] if args.skip_cold else [("cold", COLD, ["--cold-start"])]
    for dataset in args.datasets.split(","):
        for kind, configs, extra in tables:
            rows = []
            for label, script, flags in configs:
                if only and label not in only:
                    continue
                runs = []
                for seed in seeds:
                    out = Path(args.runs) / dataset / kind / f"{_slug(label)}-s{seed}"
                    if args.tables_only and not (out / "metrics.json").is_file():
                        continue
                    runs.append(run_one(script, flags + extra, dataset, seed, out, args))
                rows.append((label, runs))
            title = "warm start" if kind == "warm" else "cold start (MICRO 4.1.3 protocol)"
            sections.append(f"### {dataset}, {title}\n\n" + table(rows))

    settings = (
        f"Generated by `python examples/reproduce_results.py --datasets {args.datasets} "
        f"--seeds {args.seeds} --max-epochs {args.max_epochs} --patience {args.patience}"
        + (f" --lr {args.lr}" if args.lr is not None else "")
        + "`; "
        "test metrics at the best valid Recall@20 epoch, mean ± std over seeds.\n\n"
    )
    report = Path(args.report)
    text = report.read_text() if report.is_file() else f"# Results\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    report.write_text(head + START + "\n" + settings + "\n".join(sections) + END + tail)
    print(f"wrote {report}")


if __name__ == "__main__":
    main()
