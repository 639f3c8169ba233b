"""Shared test helpers: loading the example and benchmark scripts, small-data arguments,
modal features, BPR batches and the reference rankings used by the 'it learns' tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch_geometric.data import HeteroData

from pyg_multirec.metrics import ranking_metrics

REPO = Path(__file__).resolve().parents[1]


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """Imports the script at ``path`` as the module ``name`` (default: the file's stem), once:
    the scripts are not a package and ``sys.path`` stays as it is."""
    name = name or path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() != path.resolve():
            raise ImportError(f"module {name!r} is already imported from {loaded.__file__}")
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered first: dataclasses and pickle look it up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_example(name: str) -> ModuleType:
    """The script ``examples/{name}.py`` as a module (e.g. ``load_example('sea').SEA``)."""
    return load_script(REPO / "examples" / f"{name}.py")


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/{name}.py`` as a module; its ``from _common import ...`` finds
    ``benchmarks/_common.py``, loaded first under that name."""
    load_script(REPO / "benchmarks" / "_common.py")
    return load_script(REPO / "benchmarks" / f"{name}.py")


#: CLI arguments for a tiny synthetic data set (an example's end-to-end run takes seconds).
SMALL_SYNTHETIC_ARGS = ["--synthetic-users", "120", "--synthetic-items", "80",
                        "--synthetic-interactions", "2000", "--quiet"]


def modal_features(data: HeteroData) -> dict[str, torch.Tensor]:
    """The item feature matrix of each modality, keyed by modality name."""
    return {m: data["item"][f"{m}_feat"] for m in data.modalities}


def bpr_batch(data: HeteroData, size: int = 64, seed: int = 0):
    """A reproducible BPR batch: ``size`` distinct training edges (user, positive item) and
    one uniformly drawn item per edge as the negative (the losses under test do not depend on
    the negative being unobserved)."""
    gen = torch.Generator().manual_seed(seed)
    edges = data["user", "train", "item"].edge_index
    pick = torch.randperm(edges.size(1), generator=gen)[:size]
    neg = torch.randint(data["item"].num_nodes, (pick.numel(),), generator=gen)
    return edges[0, pick], edges[1, pick], neg


def baseline_recall(data: HeteroData, split: str = "valid", kind: str = "popular", k: int = 20):
    """Recall@k of ranking every user's unseen items by training popularity (or at random)."""
    train = data["user", "train", "item"].edge_index
    target = data["user", split, "item"].edge_index
    num_users, num_items = data["user"].num_nodes, data["item"].num_nodes
    if kind == "popular":
        item_scores = torch.bincount(train[1], minlength=num_items).float()
        scores = item_scores.expand(num_users, num_items).clone()
    else:
        scores = torch.rand(num_users, num_items, generator=torch.Generator().manual_seed(0))
    return ranking_metrics(scores, target, ks=(k,), exclude=train)[f"recall@{k}"]


def dense_recall(model, data: HeteroData, split: str = "test", k: int = 20) -> float:
    """Recall@k of ``model`` on ``split`` from one dense ``[U, I]`` score matrix, training
    items excluded: an independent check of the batched evaluator on small data."""
    model.eval()
    with torch.no_grad():
        user_emb, item_emb = model.embed()
        scores = model.score(user_emb, item_emb)
    target = data["user", split, "item"].edge_index
    exclude = data["user", "train", "item"].edge_index
    return ranking_metrics(scores, target, ks=(k,), exclude=exclude)[f"recall@{k}"]


def assert_learns(result, data: HeteroData, loss_key: str = "train_bpr", k: int = 20) -> None:
    """'It learns': the training loss fell and the best validation Recall@k beats both the
    popularity and the random ranking."""
    assert result.history[-1][loss_key] < result.history[0][loss_key]
    best = result.best_valid[f"recall@{k}"]
    assert best > baseline_recall(data, kind="popular", k=k)
    assert best > baseline_recall(data, kind="random", k=k)


def record_evaluated_splits(monkeypatch) -> list[str]:
    """Wraps the trainer's ``evaluate`` so that every split it evaluates is appended, in
    order, to the returned list (the evaluation itself runs unchanged)."""
    import pyg_multirec.train as train_module

    splits: list[str] = []
    real_evaluate = train_module.evaluate

    def spy(model, data, split="valid", **kwargs):
        splits.append(split)
        return real_evaluate(model, data, split, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", spy)
    return splits
