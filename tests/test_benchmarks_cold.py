"""``benchmarks/cold_items.py``: its rankings against a direct computation, on a tiny
``--cold-start`` checkpoint."""

from __future__ import annotations

import argparse

import pytest
import torch

from tests.helpers import SMALL_SYNTHETIC_ARGS, load_benchmark, load_example

K = 20
#: Enough items that the cold ones (20%) outnumber a top-20 list.
ITEMS = ["--synthetic-items", "200"]


@pytest.fixture(scope="module")
def cold_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("cold") / "run"
    vbpr = load_example("vbpr")
    vbpr.run_example("vbpr", vbpr.build, vbpr.add_arguments, getattr(vbpr, "DEFAULTS", None),
                     argv=["train", *SMALL_SYNTHETIC_ARGS, *ITEMS, "--cold-start", "--epochs", "3",
                           "--out", str(out)])  # fmt: skip
    return out / "best.pt"


def _reference_recall(scores, data, split, candidates):
    """Recall@K by hand: training items and non-candidates never recommended."""
    scores = scores.clone()
    scores[:, ~candidates] = -float("inf")
    train = data["user", "train", "item"].edge_index
    scores[train[0], train[1]] = -float("inf")
    top = scores.topk(K, dim=1).indices
    targets = data["user", split, "item"].edge_index
    recalls = []
    for user in targets[0].unique().tolist():
        items = targets[1][targets[0] == user]
        recalls.append(torch.isin(items, top[user]).float().mean().item())
    return sum(recalls) / len(recalls)


def test_rankings_match_a_direct_computation(cold_checkpoint):
    cold = load_benchmark("cold_items")
    report = cold.main(["--example", "vbpr", "--checkpoint", str(cold_checkpoint)])
    where = argparse.Namespace(checkpoint=str(cold_checkpoint), data_root=None)
    model, data, _ = cold._restore("vbpr", load_example("vbpr").build, where)
    warm = torch.zeros(data["item"].num_nodes, dtype=torch.bool)
    warm[data["user", "train", "item"].edge_index[1]] = True
    assert report["items"] == {"warm": int(warm.sum()), "cold": int((~warm).sum())}
    model.eval()
    with torch.no_grad():
        user_emb, item_emb = model.embed()
        scores = model.score(user_emb, item_emb)
        unit_scores = model.score(user_emb, torch.nn.functional.normalize(item_emb, dim=1))
    assert report["norm"]["cold"] == pytest.approx(item_emb[~warm].norm(dim=1).mean().item())
    assert report["score"]["warm"] == pytest.approx(scores[:, warm].mean().item(), rel=1e-5)
    assert report["score"]["cold"] == pytest.approx(scores[:, ~warm].mean().item(), rel=1e-5)
    masked = scores.clone()
    train = data["user", "train", "item"].edge_index
    masked[train[0], train[1]] = -float("inf")
    share = (~warm)[masked.topk(K, dim=1).indices].float().mean().item()
    assert report["cold_share_top"] == pytest.approx(share)
    everything = torch.ones_like(warm)
    for split in ("valid", "test"):
        got = report[split]
        assert got["all items"]["recall@20"] == pytest.approx(
            _reference_recall(scores, data, split, everything))
        assert got["all items, unit-norm items"]["recall@20"] == pytest.approx(
            _reference_recall(unit_scores, data, split, everything))
        assert got["cold items only"]["recall@20"] == pytest.approx(
            _reference_recall(scores, data, split, ~warm))
        # the targets are cold, so ranking only the cold items can only raise Recall
        assert got["cold items only"]["recall@20"] >= got["all items"]["recall@20"]
        assert 0.0 < got["random, cold items only"]["recall@20"] < 1.0


def test_rejects_a_warm_checkpoint(tmp_path):
    out = tmp_path / "warm"
    mf = load_example("mf")
    mf.run_example("mf", mf.build, mf.add_arguments, getattr(mf, "DEFAULTS", None),
                   argv=["train", *SMALL_SYNTHETIC_ARGS, "--epochs", "1", "--out", str(out)])
    cold = load_benchmark("cold_items")
    with pytest.raises(SystemExit):
        cold.main(["--example", "mf", "--checkpoint", str(out / "best.pt")])
