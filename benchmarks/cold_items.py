"""Why a model misses the cold items: a diagnosis of a ``--cold-start`` checkpoint.

Under MICRO's cold-start protocol (``--cold-start``) the valid and test targets are items with
no training interaction, ranked against all items. A model can fail there in two ways: its
cold item representations carry no signal, or they do, but score below the warm items. This
script tells them apart. For a checkpoint written by an example's ``train --cold-start``, and
for each split, it prints:

- the mean L2 norm of the item representations (``model.embed()``) and the mean score, warm
  items against cold ones, and the share of cold items in the top-20 lists (training items
  masked, as the protocol does);
- Recall@20 and NDCG@20 four ways: ranking all items (the protocol's figure), ranking all
  items with every item representation scaled to unit L2 norm (the scale taken out), ranking
  the cold items only (the warm items' scores set to ``-inf``), and random scores over the
  cold items only (the chance level of that ranking).

When "cold items only" is well above chance while "all items" is near zero, the cold
representations rank the cold items sensibly and the failure is their scale against the warm
items; "unit-norm items" then says how much of the protocol's figure the norms cost.

Usage::

    python examples/sea.py train --dataset ml100k --cold-start --out runs/sea-cold
    python benchmarks/cold_items.py --example sea --checkpoint runs/sea-cold/best.pt
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from _common import load_example, markdown_table
from torch import Tensor
from torch.nn import Module

from pyg_multirec.evaluation import DEFAULT_EVAL_BATCH_SIZE, evaluate
from pyg_multirec.experiment import _restore, warm_items

TOP_K = 20
SPLITS = ("valid", "test")
DEFAULT_SEED = 0
METRICS = (f"recall@{TOP_K}", f"ndcg@{TOP_K}")


class _ColdOnly(Module):
    """Scores of ``model`` with the warm items' columns set to ``-inf``."""

    def __init__(self, model: Module, warm: Tensor) -> None:
        super().__init__()
        self.model, self.warm = model, warm

    def embed(self) -> tuple[Tensor, Tensor]:
        return self.model.embed()

    def score(self, user_emb: Tensor, item_emb: Tensor) -> Tensor:
        scores = self.model.score(user_emb, item_emb).clone()
        scores[:, self.warm] = -float("inf")
        return scores


class _UnitItems(Module):
    """``model`` with every item representation scaled to unit L2 norm before scoring."""

    def __init__(self, model: Module) -> None:
        super().__init__()
        self.model = model

    def embed(self) -> tuple[Tensor, Tensor]:
        user_emb, item_emb = self.model.embed()
        return user_emb, torch.nn.functional.normalize(item_emb, dim=1)

    def score(self, user_emb: Tensor, item_emb: Tensor) -> Tensor:
        return self.model.score(user_emb, item_emb)


class _RandomScores(_ColdOnly):
    """Uniform random scores (a seeded generator), warm items at ``-inf``."""

    def __init__(self, model: Module, warm: Tensor, seed: int) -> None:
        super().__init__(model, warm)
        self.generator = torch.Generator().manual_seed(seed)

    def score(self, user_emb: Tensor, item_emb: Tensor) -> Tensor:
        shape = (user_emb.size(0), item_emb.size(0))
        scores = torch.rand(shape, generator=self.generator).to(user_emb.device)
        scores[:, self.warm] = -float("inf")
        return scores


def _batched_scores(
    model: Module, user_emb: Tensor, item_emb: Tensor, data: Any, warm: Tensor
) -> tuple[tuple[float, float], int]:
    """Over batches of users (one ``(batch, num_items)`` block of scores at a time): the sums
    of the scores of the warm and of the cold items, and the number of cold items in the
    top-``TOP_K`` lists with the user's training items masked, as the protocol ranks."""
    train = data["user", "train", "item"].edge_index.to(user_emb.device)
    warm = warm.to(user_emb.device)
    sums, cold_in_top = [0.0, 0.0], 0
    for start in range(0, user_emb.size(0), DEFAULT_EVAL_BATCH_SIZE):
        stop = min(start + DEFAULT_EVAL_BATCH_SIZE, user_emb.size(0))
        scores = model.score(user_emb[start:stop], item_emb)
        sums[0] += float(scores[:, warm].sum())
        sums[1] += float(scores[:, ~warm].sum())
        rows = (train[0] >= start) & (train[0] < stop)
        scores[train[0, rows] - start, train[1, rows]] = -float("inf")
        cold_in_top += int((~warm)[scores.topk(TOP_K, dim=1).indices].sum())
    return (sums[0], sums[1]), cold_in_top


def diagnose(model: Module, data: Any, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """The norms, scores and four rankings described in the module docstring."""
    num_items = data["item"].num_nodes
    warm = torch.zeros(num_items, dtype=torch.bool)
    warm[warm_items(data)] = True
    if warm.all():
        raise ValueError("every item has a training interaction: not a --cold-start split")
    model.eval()
    with torch.no_grad():
        user_emb, item_emb = model.embed()
        norms = item_emb.norm(dim=1).cpu()
        score_sums, cold_in_top = _batched_scores(model, user_emb, item_emb, data, warm)
    num_users = user_emb.size(0)
    out: dict[str, Any] = {
        "items": {"warm": int(warm.sum()), "cold": int((~warm).sum())},
        "norm": {"warm": float(norms[warm].mean()), "cold": float(norms[~warm].mean())},
        "score": {"warm": score_sums[0] / (num_users * int(warm.sum())),
                  "cold": score_sums[1] / (num_users * int((~warm).sum()))},
        "cold_share_top": cold_in_top / (num_users * TOP_K),
    }  # fmt: skip
    rankings = {
        "all items": model,
        "all items, unit-norm items": _UnitItems(model),
        "cold items only": _ColdOnly(model, warm),
        "random, cold items only": _RandomScores(model, warm, seed),
    }
    for split in SPLITS:
        out[split] = {
            name: {m: evaluate(ranker, data, split, ks=TOP_K, beyond_accuracy=False)[m]
                   for m in METRICS}
            for name, ranker in rankings.items()
        }  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", required=True, help="the example that wrote the checkpoint")
    parser.add_argument("--checkpoint", required=True, help="best.pt of a --cold-start run")
    parser.add_argument("--data-root", default=None, help="default: the checkpoint's")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="of the random scores")
    args = parser.parse_args(argv)
    module = load_example(args.example)
    model, data, config = _restore(args.example, module.build, args)
    if not getattr(config, "cold_start", False):
        parser.error(f"{args.checkpoint} was not trained with --cold-start")
    report = diagnose(model, data, args.seed)
    print(f"{args.example}, {args.checkpoint}: {report['items']['warm']} warm and "
          f"{report['items']['cold']} cold items")  # fmt: skip
    print(markdown_table(
        ["", "warm items", "cold items"],
        [["mean L2 norm of the item representation", report["norm"]["warm"],
          report["norm"]["cold"]],
         ["mean score", report["score"]["warm"], report["score"]["cold"]]],
    ))  # fmt: skip
    print(f"\nshare of cold items in the top-{TOP_K} lists: {report['cold_share_top']:.4f}\n")
    rows = [[split, name, *(values[m] for m in METRICS)]
            for split in SPLITS for name, values in report[split].items()]  # fmt: skip
    print(markdown_table(["split", "ranking", *METRICS], rows))
    return report


if __name__ == "__main__":
    main()
