"""Shared test helpers: small-data arguments, modal features, BPR batches and the reference
rankings used by the 'it learns' tests."""

from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

from pyg_multirec.metrics import ranking_metrics

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


def assert_learns(result, data: HeteroData, loss_key: str = "train_bpr", k: int = 20) -> None:
    """'It learns': the training loss fell and the best validation Recall@k beats both the
    popularity and the random ranking."""
    assert result.history[-1][loss_key] < result.history[0][loss_key]
    best = result.best_valid[f"recall@{k}"]
    assert best > baseline_recall(data, kind="popular", k=k)
    assert best > baseline_recall(data, kind="random", k=k)
