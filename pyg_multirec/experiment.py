"""The command line shared by every example script: ``train``, ``evaluate``, ``recommend``,
``tune`` (hyper-parameter search, :mod:`pyg_multirec.tune`), ``export`` (embeddings with
original ids and a FAISS index; :mod:`pyg_multirec.export`).

An example defines its model and calls :func:`run_example`; arguments, data loading,
checkpoints and output live here once::

    def build(data, args):
        return LightGCN(data, dim=args.dim, num_layers=args.layers)

    def add_arguments(parser):
        parser.add_argument('--layers', type=int, default=2)

    if __name__ == '__main__':
        run_example('lightgcn', build, add_arguments)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import HeteroData

from pyg_multirec import distributed
from pyg_multirec.datasets import cold_start_split, load_dataset
from pyg_multirec.evaluation import evaluate
from pyg_multirec.export import (
    add_export_parser,
    add_index_argument,
    export_command,
    recommend_command,
)
from pyg_multirec.models import Recommender
from pyg_multirec.sampling import PAIR_SAMPLING
from pyg_multirec.train import TrainResult, resolve_device, seed_everything, train
from pyg_multirec.tune import add_tune_arguments, run_tune

SUBCOMMANDS = ("train", "evaluate", "recommend", "tune", "export")
DATA_ENV = "PYG_MULTIREC_DATA"
REPORTED_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
NEGATIVES = ("all", "warm")
BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"

BuildModel = Callable[[HeteroData, argparse.Namespace], Recommender]
AddArguments = Callable[[argparse.ArgumentParser], None]


def default_data_root() -> str:
    """The default data root.

    ``$PYG_MULTIREC_DATA`` if set, else ``shared/data`` beside the repository when it
    exists, else ``../shared/data`` (relative to the working directory).
    """
    if os.environ.get(DATA_ENV):
        return os.environ[DATA_ENV]
    beside_repo = Path(__file__).resolve().parents[2] / "shared" / "data"
    return str(beside_repo) if beside_repo.is_dir() else "../shared/data"


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset",
        default="synthetic",
        help="'synthetic' (generated, needs no files; the default) or the name of an MMRec "
        "folder under --data-root, e.g. 'ml100k', 'baby'",
    )
    group.add_argument(
        "--data-root",
        default=default_data_root(),
        help=f"folder holding MMRec datasets (default: ${DATA_ENV} or ../shared/data)",
    )
    group.add_argument(
        "--cold-start",
        action="store_true",
        help="MICRO's cold-start protocol: 20%% of items lose their training interactions",
    )
    group.add_argument("--synthetic-users", type=int, default=1000)
    group.add_argument("--synthetic-items", type=int, default=500)
    group.add_argument("--synthetic-interactions", type=int, default=20000)


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=1000, help="maximum epochs")
    group.add_argument("--batch-size", type=int, default=2048)
    group.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    group.add_argument("--weight-decay", type=float, default=0.0)
    group.add_argument(
        "--negatives",
        choices=NEGATIVES,
        default="all",
        help="BPR negatives drawn from all items, or only from the warm items (those with a "
        "training interaction; with --cold-start the cold items are then never negatives)",
    )
    group.add_argument(
        "--pair-sampling",
        choices=PAIR_SAMPLING,
        default="edges",
        help="each epoch a shuffled pass over the training pairs (edges), or as many draws of "
        "a uniform user and one of its pairs (users: every user weighs the same; MICRO's "
        "official sampler)",
    )
    group.add_argument("--patience", type=int, default=20, help="early stopping on valid Recall@20")
    group.add_argument("--dim", type=int, default=64, help="embedding dimension")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    group.add_argument("--eval-batch-size", type=int, default=1024)
    group.add_argument(
        "--mask-valid", action="store_true", help="also mask validation items at test time"
    )
    group.add_argument(
        "--out", default=None, help="output folder (default runs/NAME-DATASET-sSEED)"
    )
    group.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    group.add_argument("--max-batches", type=int, default=None, help=argparse.SUPPRESS)
    group.add_argument("--quiet", action="store_true", help="no progress bar")
    group.add_argument(
        "--plots",
        action="store_true",
        help="write OUT/curves.png (loss, valid Recall@20) and, for models with generic and "
        "unique parts (SEA), OUT/tsne.png; needs matplotlib (pip install pyg_multirec[viz])",
    )


def build_parser(
    name: str, add_arguments: AddArguments | None, defaults: dict[str, Any] | None
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"examples/{name}.py",
        description=f"Train, evaluate or query the {name} model (default sub-command: train).",
    )
    sub = parser.add_subparsers(dest="command")
    for command, summary in (
        ("train", "train with early stopping and report test metrics"),
        ("tune", "search hyper-parameters on the validation split"),
    ):
        sub_p = sub.add_parser(command, help=summary)
        _add_data_arguments(sub_p)
        _add_train_arguments(sub_p)
        if add_arguments is not None:
            add_arguments(sub_p.add_argument_group(f"{name} hyper-parameters"))
        if defaults:
            sub_p.set_defaults(**defaults)
        if command == "tune":
            add_tune_arguments(sub_p)
    eval_p = sub.add_parser("evaluate", help="recompute the test metrics of a checkpoint")
    eval_p.add_argument("--checkpoint", required=True, help="a best.pt written by train")
    eval_p.add_argument(
        "--data-root", default=None, help="override the data root it was trained on"
    )
    rec_p = sub.add_parser("recommend", help="top-K items for one user from a checkpoint")
    rec_p.add_argument("--checkpoint", required=True, help="a best.pt written by train")
    rec_p.add_argument("--user", type=int, required=True, help="user id (0-based, as in the data)")
    rec_p.add_argument("--k", type=int, default=10)
    rec_p.add_argument("--data-root", default=None, help="override the data root it was trained on")
    add_index_argument(rec_p)
    add_export_parser(sub)
    return parser


def load_data(args: argparse.Namespace) -> HeteroData:
    """Loads the dataset named by ``args`` (and applies the cold-start split if asked)."""
    if args.dataset == "synthetic":
        data = load_dataset(
            "synthetic",
            num_users=args.synthetic_users,
            num_items=args.synthetic_items,
            num_interactions=args.synthetic_interactions,
            seed=args.seed,
        )
    else:
        # Interaction-only folders load too (MF, LightGCN); multimodal models reject them.
        data = load_dataset(args.dataset, args.data_root, allow_no_modality=True)
    if args.cold_start:
        data = cold_start_split(data, seed=args.seed)
    return data


def warm_items(data: HeteroData) -> torch.Tensor:
    """The sorted ids of the items with at least one training interaction."""
    return data["user", "train", "item"].edge_index[1].unique()


def _format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in REPORTED_METRICS if k in metrics)


def train_with_args(
    model: Recommender, data: HeteroData, args: argparse.Namespace, **kwargs: Any
) -> TrainResult:
    """Calls :func:`~pyg_multirec.train.train` with the shared harness flags in ``args``.

    The one place where those flags become training options, for the ``train`` and
    ``tune`` sub-commands alike; ``kwargs`` (e.g. ``evaluate_test=False``) pass on to
    :func:`~pyg_multirec.train.train`.
    """
    return train(
        model,
        data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        patience=args.patience,
        eval_batch_size=args.eval_batch_size,
        mask_valid_at_test=args.mask_valid,
        seed=args.seed,
        device=args.device,
        max_train_batches=args.max_batches,
        negative_items=warm_items(data) if args.negatives == "warm" else None,
        pair_sampling=getattr(args, "pair_sampling", "edges"),  # older saved configurations
        **kwargs,
    )


def _train(name: str, build_model: BuildModel, args: argparse.Namespace) -> TrainResult:
    # Under torchrun (see docs/distributed.md) every process trains; rank 0 alone processes
    # raw data files first, writes the outputs and prints.
    replicas, _ = distributed.setup(resolve_device(args.device))
    seed_everything(args.seed)
    data = replicas.on_main(lambda: load_data(args), share=False)
    if not replicas.is_main:
        data = load_data(args)
    model = build_model(data, args)
    out = Path(args.out or f"runs/{name}-{args.dataset}-s{args.seed}")
    if replicas.is_main:
        out.mkdir(parents=True, exist_ok=True)
    result = train_with_args(
        model,
        data,
        args,
        history_path=out / "history.json",
        checkpoint_path=out / LAST_CHECKPOINT,
        resume=args.resume,
        progress=not args.quiet,
    )
    if replicas.is_main:
        _write_outputs(name, model, result, args, out)
    return result


def _write_outputs(
    name: str, model: Recommender, result: TrainResult, args: argparse.Namespace, out: Path
) -> None:
    config = {k: v for k, v in vars(args).items() if k != "command"}
    torch.save(
        {"model": name, "config": config, "state": model.state_dict()}, out / BEST_CHECKPOINT
    )
    summary = {"model": name, "config": config, **result.to_dict()}
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))
    if args.plots:
        _write_plots(model, result, out)
    print(f"best epoch {result.best_epoch}  valid: {_format_metrics(result.best_valid)}")
    print(f"test: {_format_metrics(result.test)}")
    print(
        f"{result.seconds_per_epoch:.2f} s/epoch; wrote {out / BEST_CHECKPOINT}, {out}/metrics.json"
    )


def _write_plots(model: Recommender, result: TrainResult, out: Path) -> None:
    from pyg_multirec.viz import plot_training_curves, plot_tsne

    written = [plot_training_curves(result.history, out / "curves.png")]
    parts = getattr(model, "part_representations", None)
    if callable(parts):
        model.eval()
        reps = {k: v.detach().cpu() for k, v in parts().items()}
        written.append(plot_tsne(reps, out / "tsne.png"))
    print("plots: " + ", ".join(str(p) for p in written))


def _restore(
    name: str, build_model: BuildModel, args: argparse.Namespace
) -> tuple[Recommender, HeteroData, argparse.Namespace]:
    path = Path(args.checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(saved, dict) or "config" not in saved or "state" not in saved:
        raise ValueError(f"{path} is not a checkpoint written by 'train'")
    if saved["model"] != name:
        raise ValueError(f"{path} holds a {saved['model']!r} model, not {name!r}")
    config = argparse.Namespace(**saved["config"])
    if args.data_root is not None:
        config.data_root = args.data_root
    seed_everything(config.seed)
    data = load_data(config)
    model = build_model(data, config)
    model.load_state_dict(saved["state"])
    model.on_epoch_start(0)
    return model, data, config


def _read_titles(config: argparse.Namespace) -> dict[int, str]:
    path = Path(config.data_root) / config.dataset / "items.tsv"
    if config.dataset == "synthetic" or not path.is_file():
        return {}
    titles = {}
    with path.open(encoding="utf-8") as f:
        next(f, None)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and parts[0].isdigit():
                titles[int(parts[0])] = parts[1]
    return titles


def recommend(model: Recommender, data: HeteroData, user: int, k: int = 10) -> list[int]:
    """Top-``k`` item ids for ``user``, excluding every item the user interacted with."""
    num_users, num_items = data["user"].num_nodes, data["item"].num_nodes
    if not 0 <= user < num_users:
        raise ValueError(f"user {user} is out of range: the dataset has users 0..{num_users - 1}")
    seen = torch.cat(
        [data["user", s, "item"].edge_index for s in ("train", "valid", "test")], dim=1
    )
    seen_items = seen[1, seen[0] == user]
    if k < 1 or k > num_items - seen_items.numel():
        raise ValueError(
            f"k must be between 1 and {num_items - seen_items.numel()} (unseen items), got {k}"
        )
    model.eval()
    with torch.no_grad():
        user_emb, item_emb = model.embed()
        scores = model.score(user_emb[user : user + 1], item_emb)[0]
    scores[seen_items] = -torch.inf
    return scores.topk(k).indices.tolist()


def run_example(
    name: str,
    build_model: BuildModel,
    add_arguments: AddArguments | None = None,
    defaults: dict[str, Any] | None = None,
    argv: Sequence[str] | None = None,
    search_space: dict[str, Any] | None = None,
) -> Any:
    """Parses the command line of an example script and runs the chosen sub-command.

    Args:
        name: the model's name (used in output paths and checkpoints).
        build_model: ``(data, args) -> Recommender``.
        add_arguments: adds the model's own hyper-parameter flags.
        defaults: overrides of the shared defaults (e.g. ``{'lr': 1e-4}``).
        argv: arguments (default ``sys.argv[1:]``); ``train`` is implied when no
            sub-command is given.
        search_space: the default space of ``tune`` (see :mod:`pyg_multirec.tune`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS + ("-h", "--help"):
        argv = ["train", *argv]
    parser = build_parser(name, add_arguments, defaults)
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            resolve_device(args.device)
            return _train(name, build_model, args)
        if args.command == "tune":
            return run_tune(name, build_model, args, add_arguments, search_space)
        model, data, config = _restore(name, build_model, args)
        if args.command == "evaluate":
            metrics = evaluate(model, data, "test", mask_valid=config.mask_valid)
            print(f"test: {_format_metrics(metrics)}")
            return metrics
        if args.command == "export":
            return export_command(name, model, data, config, args)
        if args.index is not None:
            items = recommend_command(args, data)
        else:
            items = recommend(model, data, args.user, args.k)
        titles = _read_titles(config)
        for rank, item in enumerate(items, 1):
            print(f"{rank:3d}  {item}" + (f"  {titles[item]}" if item in titles else ""))
        return items
    except (ValueError, FileNotFoundError, KeyError, ImportError) as err:
        parser.exit(2, f"error: {err}\n")
