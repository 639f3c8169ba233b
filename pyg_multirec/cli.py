"""The ``pyg-multirec`` command: inspect datasets, convert your own data, plot a run.

::

    pyg-multirec info --dataset ml100k --data-root ../shared/data
    pyg-multirec convert --interactions ratings.csv --feature text=text.npy \\
        --out data --name mydata
    pyg-multirec plot runs/lightgcn-ml100k-s0/history.json --out curves.png

``python -m pyg_multirec`` is the same command. Every failure prints one ``error: ...``
line to standard error and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pyg_multirec.datasets import MMRecSummary

PROG = "pyg-multirec"
ERROR_STATUS = 2
SPLITS = ("train", "valid", "test")
PERCENT = 100.0
DEFAULT_SYNTHETIC = {"users": 1000, "items": 500, "interactions": 20000}
NPZ_SUFFIX = ".npz"
#: Spellings of the tab delimiter accepted by ``--sep``.
SEP_ALIASES = {"\\t": "\t", "tab": "\t", "TAB": "\t"}


# --------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------


def _degree_range(degree: Any) -> dict[str, float]:
    values = degree.cpu().numpy()
    return {"min": int(values.min()), "median": float(np.median(values)), "max": int(values.max())}


def dataset_summary(data: Any) -> dict[str, Any]:
    """Counts of a dataset's :class:`~torch_geometric.data.HeteroData` (see ``docs/design.md``).

    Returns:
        ``users``, ``items``, ``interactions`` (per split and ``total``), ``sparsity``
        (``1 - total / (users * items)``), ``modalities`` (``{name: dim}``), and the degree
        range of users and items over all splits.
    """
    import torch

    num_users, num_items = int(data["user"].num_nodes), int(data["item"].num_nodes)
    edges = {s: data["user", s, "item"].edge_index for s in SPLITS}
    counts = {s: int(e.size(1)) for s, e in edges.items()}
    total = sum(counts.values())
    every = torch.cat(list(edges.values()), dim=1)
    user_deg = torch.bincount(every[0], minlength=num_users)
    item_deg = torch.bincount(every[1], minlength=num_items)
    train_item_deg = torch.bincount(edges["train"][1], minlength=num_items)
    return {
        "users": num_users,
        "items": num_items,
        "interactions": {**counts, "total": total},
        "sparsity": 1.0 - total / (num_users * num_items),
        "modalities": {m: int(data["item"][f"{m}_feat"].size(1)) for m in data.modalities},
        "user_degree": _degree_range(user_deg),
        "item_degree": _degree_range(item_deg),
        "items_without_train_interactions": int((train_item_deg == 0).sum()),
    }


def _format_summary(name: str, summary: dict[str, Any]) -> str:
    inter = summary["interactions"]
    total = inter["total"]
    split = "  ".join(
        f"{s} {inter[s]:,} ({PERCENT * inter[s] / max(total, 1):.1f}%)" for s in SPLITS
    )
    mods = "  ".join(f"{m} [{d}]" for m, d in summary["modalities"].items()) or "(none)"
    deg = "{min}-{max} (median {median:g})"
    lines = [
        f"dataset       {name}",
        f"users         {summary['users']:,}",
        f"items         {summary['items']:,}",
        f"interactions  {total:,}: {split}",
        f"sparsity      {PERCENT * summary['sparsity']:.3f}% "
        f"(density {PERCENT * (1 - summary['sparsity']):.3f}%)",
        f"modalities    {mods}",
        f"user degree   {deg.format(**summary['user_degree'])}",
        f"item degree   {deg.format(**summary['item_degree'])}",
        f"items without training interactions  {summary['items_without_train_interactions']:,}",
    ]
    return "\n".join(lines)


def _cmd_info(args: argparse.Namespace) -> int:
    from pyg_multirec.experiment import default_data_root, load_data

    if args.data_root is None:
        args.data_root = default_data_root()
    data = load_data(argparse.Namespace(**vars(args), cold_start=False))
    summary = dataset_summary(data)
    if args.json:
        print(json.dumps({"dataset": args.dataset, **summary}, indent=1))
    else:
        print(_format_summary(args.dataset, summary))
    return 0


# --------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------


def parse_feature_spec(spec: str) -> tuple[str, Path, str | None]:
    """Splits ``NAME=FILE.npy``, ``NAME=FILE.npz`` or ``NAME=FILE.npz:KEY``."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"--feature {spec!r} must look like NAME=FILE.npy or NAME=FILE.npz[:KEY]")
    key = None
    head, colon, tail = rest.rpartition(":")
    if colon and head.lower().endswith(NPZ_SUFFIX) and tail:
        rest, key = head, tail
    return name, Path(rest), key


def format_conversion(summary: MMRecSummary, source: str, min_interactions: int) -> str:
    """What ``pyg-multirec convert`` prints about a conversion (see
    :class:`~pyg_multirec.datasets.MMRecSummary`)."""
    order = "by timestamp" if summary.has_timestamps else "no timestamps: file order"
    lines = [f"read {summary.num_input:,} interactions from {source} ({order})"]
    if summary.num_duplicates or summary.num_filtered:
        lines.append(
            f"dropped {summary.num_duplicates:,} duplicate (user, item) pairs and "
            f"{summary.num_filtered:,} interactions below --min-interactions {min_interactions}"
        )
    split = ", ".join(f"{s} {n:,}" for s, n in summary.split_counts.items())
    lines.append(
        f"wrote {summary.folder}: {summary.num_users:,} users, {summary.num_items:,} items, "
        f"{summary.num_interactions:,} interactions ({split})"
    )
    for modality, shape in summary.feature_shapes.items():
        rule = summary.feature_rules[modality]
        lines.append(f"  {modality}_feat.npy  float32 {list(shape)}  ({rule})")
    return "\n".join(lines)


def _cmd_convert(args: argparse.Namespace) -> int:
    from pyg_multirec.datasets import convert_files

    features: dict[str, tuple[Path, str | None]] = {}
    for spec in args.feature:
        name, path, key = parse_feature_spec(spec)
        if name in features:
            raise ValueError(f"--feature names modality {name!r} twice")
        features[name] = (path, key)
    summary = convert_files(
        args.interactions,
        features,
        args.out,
        args.name,
        user_col=args.user_col,
        item_col=args.item_col,
        time_col=args.time_col,
        sep=SEP_ALIASES.get(args.sep, args.sep),
        header=args.header,
        item_ids=args.item_ids,
        min_interactions=args.min_interactions,
        overwrite=args.overwrite,
    )
    print(format_conversion(summary, args.interactions, args.min_interactions))
    print(f"inspect it with: {PROG} info --data-root {args.out} --dataset {args.name}")
    return 0


# --------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------


def _cmd_plot(args: argparse.Namespace) -> int:
    from pyg_multirec.viz import plot_training_curves

    path = plot_training_curves(args.history, args.out, metric=args.metric)
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------
# parser and entry point
# --------------------------------------------------------------------------------------

CONVERT_EPILOG = """\
feature rows: row r of a feature file belongs to
  * the r-th id listed in --item-ids FILE, when given (one id per line, or .npy);
  * otherwise, when the file has one row per distinct item of the interactions, the
    r-th smallest original item id (integers sorted numerically, strings as text);
  * otherwise, when it has one row per item kept after --min-interactions, the r-th
    smallest kept id (rows already in output order);
  * otherwise, for non-negative integer ids and more rows than the largest id, item id r.

processing: duplicate (user, item) pairs keep the earliest; --min-interactions K keeps a
K-core (users and items with >= K interactions, repeated until stable); users and items are
re-indexed 0..n-1 in sorted order of their original ids; each user's interactions, sorted by
time (ties by item; without timestamps by file order), are split 8:1:1 with
n_test = n_valid = max(1, round(0.1 n)) (Python round) and the rest train; users with fewer
than 3 interactions keep all of them in train.

output: OUT/NAME/NAME.inter (userID itemID timestamp x_label, tab-separated; timestamp is
the file row number when there are no timestamps), OUT/NAME/<modality>_feat.npy (float32,
row i = new item i), OUT/NAME/u_id_mapping.csv and i_id_mapping.csv (original -> new id).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyg-multirec``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect multimodal recommendation datasets, convert your own data to the "
        "MMRec layout, and plot training runs. Models are trained with the example "
        "scripts (python examples/lightgcn.py --help).",
    )
    from pyg_multirec import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser(
        "info",
        help="users, items, interactions per split, modalities, sparsity of a dataset",
        description="Print the size of a dataset: users, items, interactions per split, "
        "sparsity, modalities with their dimensions, and degree ranges.",
    )
    info.add_argument(
        "--dataset",
        required=True,
        help="'synthetic' (generated) or the name of an MMRec folder under --data-root",
    )
    info.add_argument(
        "--data-root",
        default=None,
        help="folder holding MMRec datasets (default: $PYG_MULTIREC_DATA or ../shared/data)",
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    synth = info.add_argument_group("synthetic data (with --dataset synthetic)")
    synth.add_argument("--synthetic-users", type=int, default=DEFAULT_SYNTHETIC["users"])
    synth.add_argument("--synthetic-items", type=int, default=DEFAULT_SYNTHETIC["items"])
    synth.add_argument(
        "--synthetic-interactions", type=int, default=DEFAULT_SYNTHETIC["interactions"]
    )
    synth.add_argument("--seed", type=int, default=0)
    info.set_defaults(handler=_cmd_info)

    convert = sub.add_parser(
        "convert",
        help="write interactions + per-modality item features as an MMRec dataset",
        description="Convert an interaction log (CSV/TSV, or Parquet with pyarrow) and one "
        "feature matrix per modality (.npy/.npz) into the MMRec folder layout that "
        "MMRecDataset and every example read.",
        epilog=CONVERT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument(
        "--interactions",
        required=True,
        metavar="FILE",
        help="interaction log: .csv/.tsv/... (delimiter sniffed) or .parquet (needs pyarrow)",
    )
    convert.add_argument(
        "--feature",
        action="append",
        required=True,
        metavar="NAME=FILE",
        help="one modality: NAME=FILE.npy, NAME=FILE.npz (single array) or NAME=FILE.npz:KEY; "
        "repeat for each modality",
    )
    convert.add_argument("--out", required=True, metavar="DIR", help="output root folder")
    convert.add_argument(
        "--name", required=True, help="dataset name: writes DIR/NAME/NAME.inter etc."
    )
    cols = convert.add_argument_group("columns")
    cols.add_argument("--user-col", default=None, help="user id column (default: user)")
    cols.add_argument("--item-col", default=None, help="item id column (default: item)")
    cols.add_argument(
        "--time-col",
        default=None,
        help="timestamp column, numbers or ISO date-times (default: 'timestamp' if present, "
        "else file order; '' ignores any timestamp)",
    )
    cols.add_argument(
        "--sep", default=None, help="delimiter of a text file (default: sniffed; 'tab' for tab)"
    )
    cols.add_argument(
        "--no-header",
        dest="header",
        action="store_false",
        help="the text file has no header line; columns are then 0-based positions "
        "(defaults: user 0, item 1, no timestamp)",
    )
    convert.add_argument(
        "--item-ids",
        default=None,
        metavar="FILE",
        help="original item id of every feature row (one per line, or .npy); see below",
    )
    convert.add_argument(
        "--min-interactions",
        type=int,
        default=0,
        metavar="K",
        help="keep users and items with at least K interactions, repeatedly (default 0: all)",
    )
    convert.add_argument(
        "--overwrite", action="store_true", help="replace an existing dataset of that name"
    )
    convert.set_defaults(handler=_cmd_convert)

    plot = sub.add_parser(
        "plot",
        help="plot training loss and validation metric of a run (needs matplotlib)",
        description="Plot the training loss and a validation metric per epoch from the "
        "history.json written by training (needs: pip install pyg_multirec[viz]).",
    )
    plot.add_argument("history", help="a run's history.json (or .csv)")
    plot.add_argument("--out", required=True, help="image file to write (.png, .pdf, .svg)")
    plot.add_argument("--metric", default="recall@20", help="validation metric (default recall@20)")
    plot.set_defaults(handler=_cmd_plot)
    return parser


def _one_line(err: BaseException) -> str:
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(message).split()) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``pyg-multirec`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Usage errors and failures (missing files, unknown columns, mismatched feature rows,
    NaN features, ...) print one ``error: ...`` line to standard error and return 2.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else ERROR_STATUS
    try:
        return args.handler(args)
    except (ValueError, TypeError, KeyError, OSError, ImportError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return ERROR_STATUS
