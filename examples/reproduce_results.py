"""Regenerates every table of ``docs/results.md`` under the tuned protocol.

For each row (an example script with its flags) and data set, the example's ``tune``
sub-command searches its hyper-parameter space on the **validation** split (MMRec protocol:
early stopping on valid Recall@20 with patience 20, up to 1000 epochs; grid or TPE search,
no pruning, see :obj:`PRUNE_FLAGS`; :mod:`pyg_multirec.tune`) with seed 0, trains its 3
best trials again with seeds 1 and 2 (``--confirm-top``, validation only) and picks the best
mean, then re-trains that configuration for 3 seeds (5 for SEA and its ablations) and reads
their test metrics once. The tables show the tuned parameters, test mean ± std over seeds,
the beyond-accuracy metrics of the top-20 lists, and paired t-tests across seeds
(``scipy.stats.ttest_rel`` on test Recall@20): every model against LightGCN, and SEA against
each of its variants and ablations.

Everything is kept under ``--runs`` (one tune folder per row, with its SQLite study, trials
tables, ``best.json`` and seed runs), so an interrupted job continues where it stopped when
the command is run again::

    # the whole job (on a GPU machine with 16 cores: --jobs 16 --device cuda), keeping each
    # row's best.json and trials tables in the repository
    python examples/reproduce_results.py --tune --jobs 2 --archive docs/tuning/results
    # the tables from that archive, in a clean clone
    python examples/reproduce_results.py --tables-only --runs docs/tuning/results
    # only re-train the seeds of finished searches, or only rebuild the tables
    python examples/reproduce_results.py --jobs 4
    python examples/reproduce_results.py --tables-only
    # one row, small budget (a smoke test)
    python examples/reproduce_results.py --tune --only LightGCN --max-epochs 5 --trials 2
    # where each row stands (trials by state, best valid so far, seeds), training nothing
    python examples/reproduce_results.py --status
    # before the machine goes: keep the unfinished rows' studies in the repository; on a new
    # machine, copy them back to --runs before going on
    python examples/reproduce_results.py --snapshot docs/tuning/in_progress
    mkdir -p runs/results && cp -r docs/tuning/in_progress/ml100k runs/results/
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyg_multirec.experiment import default_data_root

HERE = Path(__file__).resolve().parent
START, END = "<!-- tables:start -->", "<!-- tables:end -->"
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
BEYOND = ("coverage@20", "novelty@20", "gini@20", "avg_pop@20")
SHORT = {"recall": "R", "ndcg": "N", "coverage": "Cov", "novelty": "Nov", "gini": "Gini",
         "avg_pop": "APop"}  # fmt: skip
TESTED_METRIC = "recall@20"
BASELINE = "LightGCN"
SEA = "SEA-a (SoloSim + CLUB)"
SEEDS = "0,1,2"
SEA_SEEDS = "0,1,2,3,4"
# The search scores each trial on seed 0; its best CONFIRM_TOP trials are then trained again
# with CONFIRM_SEEDS and the pick is the best mean over the three seeds (the valid surface of
# these models is flat within seed noise, so a one-seed pick is often a lucky run).
CONFIRM_TOP = 3
CONFIRM_SEEDS = "1,2"
# Every trial runs to its own early stop: no pruning. On ml100k the valid curves of these
# models cross late, and the median pruner (after 10 epochs, against the median of the
# finished trials at the same epoch) judged on values that do not predict the final ones:
# all 9 of MF's pruned trials and both of VBPR's were ahead of the eventual winner when
# stopped; LightGCN's 15 trials with 2-4 layers were stopped at epoch 10 against 5 reference
# trials that all had 1 layer; 12 of MICRO's 27 grid points were stopped at epoch 10, where
# the grid's best trial was below the median too. Trials pruned by earlier runs of this job
# are run again in full (``tune --no-prune``).
PRUNE_FLAGS = ["--no-prune"]
# SEA's weights of a component that a row switches off are fixed at the official values,
# so that the search does not spend trials on parameters without effect.
OFF_ALIGN = ["--space", "alpha=0.012", "--space", "tau=0.2"]
OFF_DISTANCE = ["--space", "beta=0.006"]


@dataclass(frozen=True)
class Row:
    label: str
    script: str
    flags: list[str] = field(default_factory=list)
    sea_family: bool = False  # 5 seeds, and compared with SEA
    # Score each searched point by its mean valid Recall@20 over the row's seeds (MF: its
    # early stop on ml100k depends on the seed, docs/results.md).
    search_over_seeds: bool = False


WARM = [
    Row("MF-BPR", "mf", search_over_seeds=True),
    Row("LightGCN", "lightgcn"),
    Row("VBPR", "vbpr"),
    Row("VBPR + SEA", "vbpr", ["--sea"]),
    Row("MICRO (MF)", "micro", ["--backbone", "mf"]),
    Row("MICRO (LightGCN)", "micro", ["--backbone", "lightgcn"]),
    Row(SEA, "sea", ["--variant", "a"], True),
    Row("SEA-b (SoloSim + neg. L2)", "sea", ["--variant", "b"], True),
    Row("SEA-c (InfoNCE + CLUB)", "sea", ["--variant", "c"], True),
    Row("SEA-d (InfoNCE + neg. L2)", "sea", ["--variant", "d"], True),
    Row("SEA w/o distancing", "sea", ["--align", "solosim", "--distance", "none", *OFF_DISTANCE],
        True),
    Row("SEA w/o alignment", "sea", ["--align", "none", "--distance", "club", *OFF_ALIGN], True),
    Row("SEA w/o both", "sea", ["--align", "none", "--distance", "none", *OFF_ALIGN,
                                *OFF_DISTANCE], True),
    # SEA's modules on top of free item ID embeddings (the plug-and-play use, issue 14)
    Row("SEA-a + item ID embedding", "sea", ["--variant", "a", "--item-id-embedding"], True),
]  # fmt: skip
#: The cold-start table (MICRO 4.1.3 protocol).
COLD = [
    Row("MF-BPR", "mf", search_over_seeds=True),
    Row("LightGCN", "lightgcn"),
    Row("VBPR", "vbpr"),
    Row("MICRO (LightGCN)", "micro", ["--backbone", "lightgcn"]),
    Row(SEA, "sea", ["--variant", "a"], True),
]


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")


def _seeds(row: Row, args) -> list[str]:
    return (SEA_SEEDS if row.sea_family else args.seeds).split(",")


def run_row(row: Row, dataset: str, kind_flags: list[str], out: Path, args) -> dict | None:
    """Runs ``tune`` (search unless ``--tune`` is off, then the seeds) for one row and
    returns its best.json, or None if it failed."""
    seeds = ",".join(_seeds(row, args))
    module = importlib.import_module(row.script)  # run as a script: examples/ is on sys.path
    argv = [
        "tune", "--dataset", dataset, "--data-root", args.data_root,
        "--epochs", str(args.max_epochs), "--patience", str(args.patience),
        "--device", args.device, "--jobs", str(args.jobs), "--seeds", seeds,
        "--out", str(out), *PRUNE_FLAGS, *row.flags, *kind_flags,
    ]  # fmt: skip
    if row.search_over_seeds:
        argv += ["--search-seeds", seeds]
    else:
        argv += ["--confirm-top", str(CONFIRM_TOP), "--confirm-seeds", CONFIRM_SEEDS]
    if args.trials is not None:
        argv += ["--trials", str(args.trials)]
    if args.retry_failed:
        argv.append("--retry-failed")
    if not args.tune:
        argv.append("--skip-search")
    tic = time.perf_counter()
    print(f"== {dataset} {row.label}: {' '.join(argv)}", flush=True)
    try:
        best = module.run_example(
            row.script, module.build, module.add_arguments, getattr(module, "DEFAULTS", None),
            argv=argv, search_space=getattr(module, "SEARCH_SPACE", None),
        )  # fmt: skip
    except SystemExit as err:  # run_example reports bad input and exits: go on with the rest
        print(f"   {row.label} failed (exit {err.code})", flush=True)
        return None
    print(f"   {row.label}: {time.perf_counter() - tic:.0f} s", flush=True)
    return best


def _read_best(out: Path) -> dict | None:
    path = out / "best.json"
    if not path.is_file():
        return None
    best = json.loads(path.read_text())
    return best if best.get("seeds") else None


#: What --archive keeps of a row's folder: enough to rebuild its table row and to read every
#: trial (the SQLite study and the seeds' checkpoints stay in --runs).
ARCHIVED = ("best.json", "trials.csv", "trials.md")


def archive(out: Path, dest: Path) -> None:
    """Copies the :obj:`ARCHIVED` files of the row folder ``out`` to ``dest``."""
    if out.resolve() == dest.resolve():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for name in ARCHIVED:
        if (out / name).is_file():
            shutil.copyfile(out / name, dest / name)


#: What --snapshot keeps of an unfinished row's folder, beside a copy of its SQLite study: no
#: training states, so the runs that were unfinished start again from epoch 1 on a new machine.
SNAPSHOT = ("confirm.json", "trials.md")


def snapshot(out: Path, dest: Path, finished: bool) -> str:
    """Keeps in ``dest`` what a new machine needs to go on with the search of the row folder
    ``out``: a consistent copy of its study (SQLite's backup, safe while a ``tune`` command
    writes to it) and the :obj:`SNAPSHOT` files. A finished row's snapshot is removed (its
    ``--archive`` copy rebuilds its table row); a row not started in ``out`` keeps its
    snapshot. Returns what was done, in words."""
    import sqlite3

    from pyg_multirec import tune

    if finished:
        if dest.is_dir():
            shutil.rmtree(dest)
            return "finished: snapshot removed"
        return "finished"
    if not (out / tune.DB_FILE).is_file():  # an older snapshot, if any, is kept
        return "not started here"

    def dump(path: Path) -> list[str] | None:
        try:
            with contextlib.closing(sqlite3.connect(path)) as db:
                return list(db.iterdump())
        except sqlite3.DatabaseError:  # not a study: replaced by the copy
            return None

    dest.mkdir(parents=True, exist_ok=True)
    copy = dest / f".{tune.DB_FILE}.new"
    with contextlib.closing(sqlite3.connect(f"file:{out / tune.DB_FILE}?mode=ro", uri=True)) as db:
        with contextlib.closing(sqlite3.connect(copy)) as target:
            db.backup(target)
    old = dest / tune.DB_FILE
    before = dump(old) if old.is_file() else None
    changed = before is None or before != dump(copy)
    if changed:
        os.replace(copy, old)
    else:  # the same study: keep the file as it is (no new bytes for git)
        copy.unlink()
    for name in SNAPSHOT:
        if (out / name).is_file():
            shutil.copyfile(out / name, dest / name)
        elif (dest / name).is_file():
            (dest / name).unlink()
    return f"study copied to {dest}" if changed else f"study unchanged in {dest}"


def _lock_held(path: Path) -> bool:
    """Whether a running ``tune`` command holds the folder lock ``path``."""
    import fcntl

    if not path.is_file():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def row_status(out: Path, seeds_wanted: int) -> str:
    """One line on a row folder: finished, not started, or its search's trials by state
    (with the epochs of the running ones), best valid Recall@20 so far, confirmation runs
    and seed runs done; whether a ``tune`` command is working on it now."""
    from pyg_multirec import tune

    best = _read_best(out)
    if best is not None and len(best["seeds"]) >= seeds_wanted:
        recalls = list(_test_by_seed(best).values())
        return f"done: test R@20 {_cell(recalls)} over {len(recalls)} seeds"
    if not (out / tune.DB_FILE).is_file():
        return "not started"
    optuna = tune._import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=tune.STUDY_NAME,
                              storage=f"sqlite:///{(out / tune.DB_FILE).resolve()}")  # fmt: skip
    live = _lock_held(out / tune.LOCK_FILE)
    states: dict[str, int] = {}
    running, complete = [], []
    trials = study.get_trials(deepcopy=False)
    for t, row in zip(trials, tune.trial_rows(study, [])):  # the trials tables' states
        state = row["state"]
        if state == "running":
            running.append(str(max(t.intermediate_values, default=0)))
            if not live:  # its command was stopped: the next one queues it again
                state = tune.INTERRUPTED
        elif state == "complete":
            complete.append(t)
        states[state] = states.get(state, 0) + 1
    parts = [", ".join(f"{n} {s}" for s, n in sorted(states.items()))]
    if running:
        parts.append(f"epochs of the {'running' if live else 'stopped'}: {', '.join(running)}")
    if complete:
        top = max(complete, key=lambda t: (t.value, -t.number))
        parts.append(f"best valid R@20 {top.value:.4f} (trial {top.number})")
    confirm = out / tune.CONFIRM_FILE
    if confirm.is_file():
        done = sum(len(v) for v in json.loads(confirm.read_text()).values())
        parts.append(f"{done} confirmation runs")
    seeds = len(list((out / tune.SEEDS_DIR).glob("s*/metrics.json")))
    parts.append(f"seeds {seeds}/{seeds_wanted}")
    return f"search ({'running now' if live else 'stopped'}): " + "; ".join(parts)


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _params(best: dict) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in best["params"].items())


def _test_by_seed(best: dict) -> dict[str, float]:
    return {s: r["test"][TESTED_METRIC] for s, r in best["seeds"].items()}


def paired_p_value(a: dict | None, b: dict | None) -> str:
    """Paired t-test (``scipy.stats.ttest_rel``) of test Recall@20 over the seeds both rows
    ran; '-' when fewer than two seeds are shared or the test is undefined."""
    if a is None or b is None or a is b:
        return "-"
    from scipy.stats import ttest_rel

    x, y = _test_by_seed(a), _test_by_seed(b)
    common = sorted(set(x) & set(y), key=int)
    if len(common) < 2:
        return "-"
    p = float(ttest_rel([x[s] for s in common], [y[s] for s in common]).pvalue)
    if math.isnan(p):
        return "-"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def table(rows: list[tuple[Row, dict | None]]) -> str:
    """The Markdown table of one data set and protocol."""
    done = {row.label: best for row, best in rows if best is not None}
    pending = [row.label for row, best in rows if best is None]
    waiting = f"\nNot finished yet (no search with re-trained seeds): {', '.join(pending)}.\n"
    if not done:
        return "(no finished runs)\n" + (waiting if pending else "")
    names = [SHORT[m.split("@")[0]] + "@" + m.split("@")[1] for m in METRICS + BEYOND]
    head = ["model", "tuned parameters", *names, "seeds", f"p vs {BASELINE}", "p vs SEA",
            "valid R@20", "best epochs", "trials", "s/epoch"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, best in rows:
        if best is None:
            continue
        runs = list(best["seeds"].values())
        cells = [row.label, _params(best)]
        cells += [_cell([r["test"][m] for r in runs if m in r["test"]]) for m in METRICS + BEYOND]
        cells.append(str(len(runs)))
        cells.append(paired_p_value(best, done.get(BASELINE)))
        cells.append(paired_p_value(best, done.get(SEA)) if row.sea_family else "-")
        cells.append(_cell([r["best_valid"]["recall@20"] for r in runs]))
        cells.append(" / ".join(str(r["best_epoch"]) for r in runs))
        trials = ", ".join(f"{n} {s}" for s, n in best["trials"].items())
        if best.get("confirmed"):  # the best trials re-scored over more seeds (tune)
            trials += f"; best {len(best['confirmed'])} confirmed"
        cells.append(trials)
        devices = sorted({r["device"] for r in runs})
        seconds = statistics.mean(r["seconds_per_epoch"] for r in runs)
        cells.append(f"{seconds:.2f} ({'/'.join(devices)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + (waiting if pending else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", action="store_true",
                        help="run (or continue) each row's search before its seeds")  # fmt: skip
    parser.add_argument("--tables-only", action="store_true",
                        help="train nothing: rebuild the tables from finished runs")
    parser.add_argument("--status", action="store_true",
                        help="train and write nothing: print where each row stands")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="trainings run in parallel processes")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--datasets", default="ml100k")
    parser.add_argument("--seeds", default=SEEDS, help=f"seeds of non-SEA rows (SEA: {SEA_SEEDS})")
    parser.add_argument("--max-epochs", type=int, default=1000)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--trials", type=int, default=None,
                        help="trials per search (default: the whole grid, or tune's TPE "
                        "default)")  # fmt: skip
    parser.add_argument("--retry-failed", action="store_true",
                        help="run again the trials that an error failed (tune --retry-failed)")
    parser.add_argument("--data-root", default=default_data_root())
    parser.add_argument("--runs", default="runs/results", help="where searches and runs are kept")
    parser.add_argument("--report", default=str(HERE.parent / "docs" / "results.md"))
    parser.add_argument("--archive", default=None,
                        help="copy each row's best.json and trials tables to this folder "
                        "(e.g. docs/tuning/results; --tables-only --runs it rebuilds the "
                        "tables from them)")  # fmt: skip
    parser.add_argument("--snapshot", default=None,
                        help="train and write nothing else: copy each unfinished row's study "
                        "(SQLite backup), confirm.json and trials.md to this folder (e.g. "
                        "docs/tuning/in_progress), and remove the finished rows' "
                        "copies")  # fmt: skip
    kept = "(its finished rows stay in the tables)"
    parser.add_argument("--skip-cold", action="store_true", help=f"run no cold row {kept}")
    parser.add_argument("--skip-warm", action="store_true", help=f"run no warm row {kept}")
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated labels to run (the others are not run {kept})",
    )
    args = parser.parse_args(argv)

    only = set(args.only.split(",")) if args.only else None
    kinds = [("warm", WARM, []), ("cold", COLD, ["--cold-start"])]
    skipped = {kind for kind, skip in (("warm", args.skip_warm), ("cold", args.skip_cold)) if skip}
    if args.status:
        for dataset in args.datasets.split(","):
            for kind, rows, _ in kinds:
                for row in rows:
                    out = Path(args.runs) / dataset / kind / _slug(row.label)
                    status = row_status(out, len(_seeds(row, args)))
                    print(f"{dataset} {kind:4} {row.label}: {status}")
        return
    if args.snapshot:
        if Path(args.snapshot).resolve() == Path(args.runs).resolve():
            parser.error(f"--snapshot {args.snapshot} is the --runs folder itself: it would "
                         "remove the finished rows' runs")  # fmt: skip
        for dataset in args.datasets.split(","):
            for kind, rows, _ in kinds:
                for row in rows:
                    slug = Path(dataset) / kind / _slug(row.label)
                    best = _read_best(Path(args.runs) / slug)
                    finished = best is not None and len(best["seeds"]) >= len(_seeds(row, args))
                    done = snapshot(Path(args.runs) / slug, Path(args.snapshot) / slug, finished)
                    print(f"{dataset} {kind:4} {row.label}: {done}")
        return
    sections, failed = [], []
    for dataset in args.datasets.split(","):
        for kind, rows, kind_flags in kinds:
            results = []
            for row in rows:
                out = Path(args.runs) / dataset / kind / _slug(row.label)
                best = _read_best(out)
                finished = best is not None and len(best["seeds"]) >= len(_seeds(row, args))
                # Rows left out by --only, --skip-warm or --skip-cold are not run, but their
                # finished runs stay in the tables.
                left_out = (only and row.label not in only) or kind in skipped
                if args.tables_only or left_out or (finished and not args.tune):
                    pass
                elif not args.tune and not (out / "study.db").is_file():
                    print(f"{row.label} ({dataset}, {kind}): no search in {out}; run with "
                          "--tune first", flush=True)  # fmt: skip
                else:
                    best = run_row(row, dataset, kind_flags, out, args)
                    if best is None:
                        failed.append(f"{dataset}/{kind}/{row.label}")
                        best = _read_best(out)
                if args.archive and best is not None:
                    archive(out, Path(args.archive) / dataset / kind / _slug(row.label))
                results.append((row, best))
            title = "warm start" if kind == "warm" else "cold start (MICRO 4.1.3 protocol)"
            sections.append(f"### {dataset}, {title}\n\n" + table(results))

    settings = (
        f"Generated by `python examples/reproduce_results.py --datasets {args.datasets} "
        f"--max-epochs {args.max_epochs} --patience {args.patience}"
        + (f" --trials {args.trials}" if args.trials is not None else "")
        + "`. Each row: the example's `tune` search on valid Recall@20 (early stopping with "
        f"that patience, at most that many epochs, every trial to its own early stop; the "
        "test split is not read) with seed 0, "
        f"its best {CONFIRM_TOP} trials trained again with seeds {CONFIRM_SEEDS} and the "
        "best mean valid Recall@20 chosen (MF-BPR: every trial scored by its mean over seeds "
        f"{SEEDS}), then the chosen configuration re-trained for seeds {args.seeds} (SEA "
        f"rows: {SEA_SEEDS}); "
        "test metrics at the best valid epoch, mean ± std over seeds. p: paired t-test "
        "(scipy.stats.ttest_rel) of test R@20 over the shared seeds, against LightGCN and, "
        "for SEA's variants and ablations, against SEA-a. Cov, Nov, Gini, APop: coverage, "
        "novelty, Gini index and average popularity of the top-20 lists "
        "(`pyg_multirec.metrics.beyond_accuracy_metrics`). s/epoch: training part of an "
        "epoch, mean over seeds (device).\n\n"
    )
    report = Path(args.report)
    text = report.read_text() if report.is_file() else f"# Results\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    report.write_text(head + START + "\n" + settings + "\n".join(sections) + END + tail)
    print(f"wrote {report}")
    if failed:
        print("failed rows: " + "; ".join(failed))


if __name__ == "__main__":
    main()
