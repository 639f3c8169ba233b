import math

import pytest
import torch

from pyg_multirec.metrics import METRIC_NAMES, ranking_metrics


def naive_metrics(scores, targets, ks, exclude=None):
    """Per-row Python reference written from the MMRec definitions."""
    num_rows, num_items = scores.shape
    target_sets = [set() for _ in range(num_rows)]
    for r, i in targets.t().tolist():
        target_sets[r].add(i)
    excluded = [set() for _ in range(num_rows)]
    if exclude is not None:
        for r, i in exclude.t().tolist():
            excluded[r].add(i)

    totals = {f"{name}@{k}": 0.0 for k in ks for name in METRIC_NAMES}
    num_evaluated = 0
    for r in range(num_rows):
        relevant = target_sets[r]
        if not relevant:
            continue
        num_evaluated += 1
        row = scores[r].tolist()
        allowed = [i for i in range(num_items) if i not in excluded[r]]
        ranking = sorted(allowed, key=lambda i: -row[i])
        ranking += sorted(excluded[r])  # excluded items trail, never hits
        for k in ks:
            hits = [1.0 if (i in relevant and i not in excluded[r]) else 0.0 for i in ranking[:k]]
            n_k = min(len(relevant), k)
            dcg = sum(h / math.log2(rank + 2) for rank, h in enumerate(hits))
            idcg = sum(1.0 / math.log2(rank + 2) for rank in range(n_k))
            ap = sum(sum(hits[: rank + 1]) / (rank + 1) for rank, h in enumerate(hits) if h)
            totals[f"recall@{k}"] += sum(hits) / len(relevant)
            totals[f"ndcg@{k}"] += dcg / idcg
            totals[f"precision@{k}"] += sum(hits) / k
            totals[f"map@{k}"] += ap / n_k
            totals[f"hit@{k}"] += float(sum(hits) > 0)
    return {key: value / num_evaluated for key, value in totals.items()}, num_evaluated


def hand_example():
    # 3 rows x 6 items, ks = (2, 4).
    # row 0: ranking 0,1,2,3,4,5; targets {1, 3}             -> hits [0, 1, 0, 1]
    # row 1: no targets (ignored, even though it has an excluded item)
    # row 2: ranking 5,4,3,2,1,0; targets {5, 0, 2}; item 4 excluded
    #        -> ranking 5,3,2,1,0 (4 last)                     -> hits [1, 0, 1, 0]
    scores = torch.tensor(
        [
            [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
            [0.3, 0.1, 0.2, 0.6, 0.5, 0.4],
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        ]
    )
    targets = torch.tensor([[0, 0, 2, 2, 2], [1, 3, 5, 0, 2]])
    exclude = torch.tensor([[1, 2], [0, 4]])
    return scores, targets, exclude


def test_hand_computed_example():
    scores, targets, exclude = hand_example()
    out = ranking_metrics(scores, targets, ks=(2, 4), exclude=exclude)
    d2, d3, d4 = (1 / math.log2(rank + 1) for rank in (2, 3, 4))  # discount of ranks 2-4
    expected = {
        # recall: row 0 1/2 (@2), 2/2 (@4); row 2 1/3 (@2), 2/3 (@4)
        "recall@2": (1 / 2 + 1 / 3) / 2,
        "recall@4": (1 + 2 / 3) / 2,
        # precision: 1 hit in 2 and 2 hits in 4 for both rows
        "precision@2": 0.5,
        "precision@4": 0.5,
        # ndcg@2: row 0 hit at rank 2, ideal 2 positions; row 2 hit at rank 1, ideal 2
        "ndcg@2": (d2 / (1 + d2) + 1 / (1 + d2)) / 2,
        # ndcg@4: row 0 hits at 2, 4, ideal 2 positions; row 2 hits at 1, 3, ideal 3
        "ndcg@4": ((d2 + d4) / (1 + d2) + (1 + d3) / (1 + d2 + d3)) / 2,
        # map@2: row 0 (P@2 = 1/2) / min(2, 2); row 2 (P@1 = 1) / min(3, 2)
        "map@2": (0.5 / 2 + 1 / 2) / 2,
        # map@4: row 0 (1/2 + 2/4) / 2; row 2 (1/1 + 2/3) / 3
        "map@4": ((0.5 + 0.5) / 2 + (1 + 2 / 3) / 3) / 2,
        "hit@2": 1.0,
        "hit@4": 1.0,
    }
    assert out["num_rows"] == 2
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=1e-12), key
    # a few numbers written out: ndcg@2 = 0.5, ndcg@4 = (0.650921 + 0.703918) / 2, map@4 = 19/36
    assert out["ndcg@2"] == pytest.approx(0.5)
    assert out["ndcg@4"] == pytest.approx(0.677420, abs=1e-6)
    assert out["map@4"] == pytest.approx(19 / 36)
    assert set(out) == {f"{n}@{k}" for n in METRIC_NAMES for k in (2, 4)} | {"num_rows"}


def test_sum_reduction_divides_to_mean():
    scores, targets, exclude = hand_example()
    mean = ranking_metrics(scores, targets, ks=(2, 4), exclude=exclude)
    total = ranking_metrics(scores, targets, ks=(2, 4), exclude=exclude, reduction="sum")
    assert total["num_rows"] == mean["num_rows"] == 2
    for key in mean:
        if key != "num_rows":
            assert total[key] / total["num_rows"] == pytest.approx(mean[key])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference_on_random_data(seed):
    gen = torch.Generator().manual_seed(seed)
    num_rows, num_items = 40, 30
    scores = torch.randn(num_rows, num_items, generator=gen)  # no ties (almost surely)
    pairs = torch.rand(num_rows, num_items, generator=gen)
    targets = (pairs < 0.15).nonzero().t()
    exclude = (pairs > 0.7).nonzero().t()
    targets = torch.cat([targets, targets[:, :5]], dim=1)  # duplicates count once
    ks = (1, 5, 10, 30)
    out = ranking_metrics(scores, targets, ks=ks, exclude=exclude)
    ref, num_evaluated = naive_metrics(scores, targets, ks, exclude)
    assert out["num_rows"] == num_evaluated
    for key, value in ref.items():
        assert out[key] == pytest.approx(value, abs=1e-10), key


def test_float32_and_float64_agree():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(20, 15, generator=gen, dtype=torch.float64)
    targets = (torch.rand(20, 15, generator=gen) < 0.2).nonzero().t()
    a = ranking_metrics(scores, targets, ks=5)
    b = ranking_metrics(scores.float(), targets, ks=5)
    assert a == pytest.approx(b)


def test_excluded_items_are_never_recommended():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    targets = torch.tensor([[0], [2]])
    # without exclusion item 2 is at rank 3; excluding items 0 and 1 lifts it to rank 1
    assert ranking_metrics(scores, targets, ks=1)["hit@1"] == 0.0
    out = ranking_metrics(scores, targets, ks=1, exclude=torch.tensor([[0, 0], [0, 1]]))
    assert out["hit@1"] == 1.0 and out["ndcg@1"] == 1.0


def test_excluded_target_cannot_be_hit_but_counts():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
    targets = torch.tensor([[0, 0], [0, 1]])
    out = ranking_metrics(scores, targets, ks=(2, 4), exclude=torch.tensor([[0], [0]]))
    # item 0 excluded: ranking 1, 2, 3, (0); one hit of two targets, even at K = 4 where
    # the excluded item fills the last slot
    assert out["recall@2"] == pytest.approx(0.5)
    assert out["recall@4"] == pytest.approx(0.5)
    assert out["precision@4"] == pytest.approx(0.25)
    assert out["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_rows_without_targets_are_ignored():
    scores, targets, exclude = hand_example()
    base = ranking_metrics(scores, targets, ks=(2, 4), exclude=exclude)
    more = torch.cat([scores, torch.randn(5, 6)], dim=0)  # extra rows, no targets
    out = ranking_metrics(more, targets, ks=(2, 4), exclude=exclude)
    assert out == pytest.approx(base)
    assert out["num_rows"] == 2


def test_inputs_are_not_modified_and_grad_is_ignored():
    scores, targets, exclude = hand_example()
    scores.requires_grad_()
    before = scores.detach().clone()
    ranking_metrics(scores, targets, ks=2, exclude=exclude)
    assert torch.equal(scores.detach(), before)


def test_infinite_scores_are_allowed_and_a_single_nan_is_caught():
    scores, targets, _ = hand_example()
    scores[1, 0], scores[1, 1] = float("inf"), float("-inf")  # their sum is NaN
    assert ranking_metrics(scores, targets, ks=2)["num_rows"] == 2
    scores[2, 3] = float("nan")
    with pytest.raises(ValueError, match="'scores' contains NaN"):
        ranking_metrics(scores, targets, ks=2)


def test_duplicate_ks_and_int_ks():
    scores, targets, exclude = hand_example()
    a = ranking_metrics(scores, targets, ks=(2, 2), exclude=exclude)
    b = ranking_metrics(scores, targets, ks=2, exclude=exclude)
    assert a == b


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"scores": torch.zeros(6)}, ValueError, "2-dimensional"),
        ({"scores": torch.zeros(3, 6, dtype=torch.long)}, TypeError, "floating-point"),
        ({"scores": torch.full((3, 6), float("nan"))}, ValueError, "NaN"),
        ({"scores": [[0.0]]}, TypeError, "torch.Tensor"),
        ({"targets": torch.zeros(2, 3)}, TypeError, "'targets' must be a long"),
        ({"targets": torch.zeros(3, 3, dtype=torch.long)}, ValueError, r"shape \(2, E\)"),
        ({"targets": torch.tensor([[3], [0]])}, ValueError, r"'targets' has row ids .*found 3"),
        ({"targets": torch.tensor([[0], [6]])}, ValueError, r"'targets' has item ids .*found 6"),
        ({"targets": torch.tensor([[0], [-1]])}, ValueError, "item ids out of range"),
        ({"targets": torch.zeros(2, 0, dtype=torch.long)}, ValueError, "'targets' is empty"),
        ({"exclude": torch.tensor([[0], [9]])}, ValueError, r"'exclude' has item ids"),
        ({"exclude": torch.zeros(2, 1, dtype=torch.int32)}, TypeError, "'exclude' must be"),
        ({"ks": (0,)}, ValueError, ">= 1"),
        ({"ks": (7,)}, ValueError, "larger than the number of items"),
        ({"ks": ()}, ValueError, "at least one"),
        ({"ks": (2.0,)}, TypeError, "integers"),
        ({"reduction": "none"}, ValueError, "'reduction' must be one of"),
    ],
)
def test_errors(kwargs, error, match):
    scores, targets, _ = hand_example()
    args = {"scores": scores, "targets": targets, "ks": (2,)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ranking_metrics(**args)


def test_beyond_accuracy_by_hand():
    from pyg_multirec.metrics import beyond_accuracy_metrics, coverage_and_gini

    # top-2 lists of 3 users over 4 items: item counts [3, 2, 1, 0].
    top = torch.tensor([[0, 1], [0, 2], [1, 0]])
    popularity = torch.tensor([4, 2, 1, 0])
    out = beyond_accuracy_metrics(top, popularity, num_users=4, ks=(1, 2))
    assert out["coverage@2"] == pytest.approx(3 / 4)
    # sorted counts [0, 1, 2, 3]: (-3 * 0 - 1 * 1 + 1 * 2 + 3 * 3) / (4 * 6)
    assert out["gini@2"] == pytest.approx(10 / 24)
    assert out["avg_pop@2"] == pytest.approx(((4 + 2) / 2 + (4 + 1) / 2 + (2 + 4) / 2) / 3)
    # self-information -log2(p / 4): item 0 -> 0, item 1 -> 1, item 2 -> 2
    assert out["novelty@2"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # top-1: items 0, 0, 1 -> coverage 2/4; counts sorted [0, 0, 1, 2] -> (1 * 1 + 3 * 2) / 12
    assert out["coverage@1"] == pytest.approx(0.5)
    assert out["gini@1"] == pytest.approx(7 / 12)
    assert out["novelty@1"] == pytest.approx(1 / 3)
    sums = beyond_accuracy_metrics(top, popularity, num_users=4, ks=2, reduction="sum")
    assert set(sums) == {"avg_pop@2", "novelty@2"}
    assert sums["novelty@2"] == pytest.approx(2.0)
    # Extremes of Gini: uniform counts -> 0, one item gets everything -> (I - 1) / I.
    assert coverage_and_gini(torch.tensor([2, 2, 2]))[1] == pytest.approx(0.0)
    assert coverage_and_gini(torch.tensor([0, 0, 5])) == pytest.approx((1 / 3, 2 / 3))
    assert coverage_and_gini(torch.zeros(3, dtype=torch.long)) == (0.0, 0.0)


def test_ranking_metrics_with_popularity_uses_the_ranked_lists():
    # Row 1 has no target and is ignored; row 0's top-2 after excluding item 0 is [1, 2].
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    out = ranking_metrics(
        scores, torch.tensor([[0], [3]]), ks=2, exclude=torch.tensor([[0], [0]]),
        popularity=torch.tensor([1, 1, 2, 8]), num_users=8,
    )  # fmt: skip
    assert out["coverage@2"] == pytest.approx(2 / 4)
    assert out["avg_pop@2"] == pytest.approx(1.5)
    assert out["novelty@2"] == pytest.approx((3 + 2) / 2)
    with pytest.raises(ValueError, match="num_users"):
        ranking_metrics(scores, torch.tensor([[0], [3]]), ks=2, popularity=torch.ones(4))


@pytest.mark.parametrize(
    "top, popularity, match",
    [
        (torch.tensor([[0, 5]]), torch.ones(4), "out of range"),
        (torch.tensor([[0]]), torch.ones(4), "fewer than"),
        (torch.tensor([[0.0, 1.0]]), torch.ones(4), "long tensor"),
        (torch.tensor([[0, 1]]), -torch.ones(4), "non-negative"),
    ],
)
def test_beyond_accuracy_errors(top, popularity, match):
    from pyg_multirec.metrics import beyond_accuracy_metrics

    with pytest.raises(ValueError, match=match):
        beyond_accuracy_metrics(top, popularity, num_users=3, ks=2)
