import math

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData

from pyg_multirec.evaluation import build_user_item_csr, evaluate
from pyg_multirec.metrics import item_popularity, ranking_metrics
from pyg_multirec.sampling import BPRSampler


class TableModel(torch.nn.Module):
    """Stand-in recommender whose scores are a fixed ``[U, I]`` table.

    ``embed()`` returns one-hot users and ``table.T`` as items, so that
    ``score(user_emb[batch], item_emb) = table[batch]``.
    """

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", table)
        self.embed_calls = 0
        self.score_batches = []

    def embed(self):
        self.embed_calls += 1
        assert not self.training and not torch.is_grad_enabled()
        return torch.eye(self.table.size(0)), self.table.t()

    def score(self, user_emb, item_emb):
        self.score_batches.append(user_emb.size(0))
        return user_emb @ item_emb.t()


class MF(torch.nn.Module):
    def __init__(self, num_users, num_items, dim=16):
        super().__init__()
        self.user = torch.nn.Embedding(num_users, dim)
        self.item = torch.nn.Embedding(num_items, dim)

    def embed(self):
        return self.user.weight, self.item.weight

    def score(self, user_emb, item_emb):
        return user_emb @ item_emb.t()


def make_data(num_users, num_items, train, valid, test):
    data = HeteroData()
    data["user"].num_nodes = num_users
    data["item"].num_nodes = num_items
    for name, edges in (("train", train), ("valid", valid), ("test", test)):
        data["user", name, "item"].edge_index = torch.as_tensor(edges, dtype=torch.long)
    return data


def random_split_data(num_users=30, num_items=25, seed=0):
    """Disjoint random train/valid/test pairs in shuffled order; some users lack test items."""
    gen = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 10, (num_users, num_items), generator=gen)
    label[:4] = torch.where(label[:4] >= 8, 0, label[:4])  # users 0-3: no test items
    edges = {}
    for name, lo, hi in (("train", 0, 2), ("valid", 2, 3), ("test", 3, 4)):
        pairs = ((label >= lo) & (label < hi)).nonzero().t()
        edges[name] = pairs[:, torch.randperm(pairs.size(1), generator=gen)]
    scores = torch.randn(num_users, num_items, generator=gen)
    data = make_data(num_users, num_items, edges["train"], edges["valid"], edges["test"])
    return data, scores


@pytest.mark.parametrize("batch_size", [1, 3, 7, 64])
@pytest.mark.parametrize("split", ["valid", "test"])
def test_matches_ranking_metrics_on_the_full_matrix(batch_size, split):
    data, scores = random_split_data()
    model = TableModel(scores)
    out = evaluate(model, data, split, ks=(1, 5, 10), batch_size=batch_size)
    targets = data["user", split, "item"].edge_index
    exclude = data["user", "train", "item"].edge_index
    # The whole matrix at once: coverage and Gini over all users' lists, while evaluate()
    # aggregates the item counts of its batches.
    popularity = item_popularity(exclude, scores.size(1))
    ref = ranking_metrics(
        scores, targets, ks=(1, 5, 10), exclude=exclude, popularity=popularity,
        num_users=scores.size(0),
    )  # fmt: skip
    assert set(ref) >= {"coverage@5", "gini@5", "novelty@5", "avg_pop@5"}
    assert out == pytest.approx(ref, abs=1e-12)
    assert out["num_rows"] == torch.unique(targets[0]).numel()
    assert model.embed_calls == 1
    assert max(model.score_batches) <= batch_size


def test_mask_valid_matches_ranking_metrics():
    data, scores = random_split_data(seed=1)
    out = evaluate(
        TableModel(scores), data, "test", ks=(5,), batch_size=4, mask_valid=True,
        beyond_accuracy=False,
    )  # fmt: skip
    exclude = torch.cat(
        [data["user", "train", "item"].edge_index, data["user", "valid", "item"].edge_index], 1
    )
    ref = ranking_metrics(scores, data["user", "test", "item"].edge_index, ks=5, exclude=exclude)
    assert out == pytest.approx(ref, abs=1e-12)


def test_training_items_are_never_recommended():
    # every user: train items score 100 (the best), test items 50, the rest random below 1
    num_users, num_items = 12, 10
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(num_users, num_items, generator=gen)
    train, test = [[], []], [[], []]
    for u in range(num_users):
        items = torch.randperm(num_items, generator=gen)[:5].tolist()
        for i in items[:3]:
            train[0].append(u), train[1].append(i)
            scores[u, i] = 100.0
        for i in items[3:]:
            test[0].append(u), test[1].append(i)
            scores[u, i] = 50.0
    data = make_data(num_users, num_items, train, [[0], [items[0]]], test)
    out = evaluate(TableModel(scores), data, "test", ks=(1, 2), batch_size=5)
    assert out["hit@1"] == 1.0
    assert out["recall@2"] == 1.0
    assert out["precision@2"] == 1.0
    assert out["ndcg@2"] == pytest.approx(1.0)


def test_mask_valid_changes_test_results():
    # one user, 5 items: train {0}, valid {1}, test {2}; scores rank 0 > 1 > 2 > 3 > 4
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    data = make_data(1, 5, [[0], [0]], [[0], [1]], [[0], [2]])
    model = TableModel(scores)
    plain = evaluate(model, data, "test", ks=(1, 2))
    masked = evaluate(model, data, "test", ks=(1, 2), mask_valid=True)
    # without masking valid, item 1 is ranked first: test item at rank 2
    assert plain["hit@1"] == 0.0 and plain["recall@2"] == 1.0
    assert plain["ndcg@2"] == pytest.approx(1 / torch.log2(torch.tensor(3.0)).item())
    # with valid masked, the test item is ranked first
    assert masked["hit@1"] == 1.0 and masked["ndcg@2"] == 1.0
    # mask_valid only applies to the test split
    assert evaluate(model, data, "valid", ks=1, mask_valid=True)["hit@1"] == 1.0


@pytest.mark.parametrize("training", [True, False])
def test_training_mode_is_restored(training):
    data, scores = random_split_data()
    model = TableModel(scores).train(training)
    evaluate(model, data, ks=5)
    assert model.training is training


def test_training_mode_is_restored_after_an_error():
    data, scores = random_split_data()
    model = TableModel(scores)
    model.score = lambda user_emb, item_emb: torch.zeros(user_emb.size(0), 3)
    with pytest.raises(ValueError, match=r"model.score\(\) must return scores of shape"):
        evaluate(model, data, ks=1)
    assert model.training


def test_build_user_item_csr():
    edges = torch.tensor([[2, 0, 2, 3, 0], [5, 1, 4, 0, 3]])
    ptr, items = build_user_item_csr(edges, num_users=5)
    assert ptr.tolist() == [0, 2, 2, 4, 5, 5]
    for u in range(5):
        expected = [i for v, i in edges.t().tolist() if v == u]
        assert items[ptr[u] : ptr[u + 1]].tolist() == expected


def test_it_trains_recall_rises():
    # 3 user groups, each interacting with its own 8 of 24 items; MF trained with BPR
    torch.manual_seed(0)
    num_users, num_items, groups = 30, 24, 3
    gen = torch.Generator().manual_seed(0)
    user_group = torch.arange(num_users) % groups
    liked = (torch.arange(num_items) % groups)[None, :] == user_group[:, None]
    label = torch.randint(0, 10, (num_users, num_items), generator=gen)
    train = (liked & (label < 6)).nonzero().t()
    valid = (liked & (label >= 6)).nonzero().t()
    data = make_data(num_users, num_items, train, valid, valid)
    model = MF(num_users, num_items)
    before = evaluate(model, data, "valid", ks=5)["recall@5"]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=0.01)
    sampler = BPRSampler(train, num_users, num_items, batch_size=64)
    for _ in range(20):
        for users, pos, neg in sampler:
            u, i = model.embed()
            diff = (u[users] * (i[pos] - i[neg])).sum(-1)
            loss = -F.logsigmoid(diff).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    after = evaluate(model, data, "valid", ks=5)["recall@5"]
    assert after > before + 0.3 and after > 0.7  # about 0.34 -> 0.87


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "train"}, r"'split' must be one of \('valid', 'test'\)"),
        ({"split": "dev"}, r"'split' must be one of \('valid', 'test'\)"),
        ({"batch_size": 0}, "'batch_size' must be an int >= 1"),
        ({"ks": (99,)}, "larger than the number of items"),
    ],
)
def test_argument_errors(kwargs, match):
    data, scores = random_split_data()
    with pytest.raises(ValueError, match=match):
        evaluate(TableModel(scores), data, **kwargs)


def test_data_errors():
    scores = torch.rand(2, 4)
    data = make_data(2, 4, [[0], [1]], [[1], [2]], torch.zeros(2, 0))
    with pytest.raises(ValueError, match="split 'test' has no interactions"):
        evaluate(TableModel(scores), data, "test")
    del data["user", "valid", "item"]
    with pytest.raises(ValueError, match=r"no \('user', 'valid', 'item'\) edges"):
        evaluate(TableModel(scores), data, "valid", ks=1)
    data = make_data(2, 4, [[0], [1]], [[1], [4]], [[1], [2]])
    with pytest.raises(ValueError, match=r"item ids out of range \[0, 4\)"):
        evaluate(TableModel(scores), data, "valid", ks=1)
    data = make_data(3, 4, [[0], [1]], [[1], [2]], [[1], [2]])
    with pytest.raises(ValueError, match="returned 2 user rows, but the data has 3 users"):
        evaluate(TableModel(scores), data, "valid", ks=1)


def test_beyond_accuracy_by_hand():
    # 3 users, 4 items; training popularity [3, 1, 1, 0] (users 0-2 all saw item 0, ...).
    train = [[0, 1, 2, 0, 1], [0, 0, 0, 1, 2]]
    # Users 0 and 1 rank unseen items; user 2 too. Scores make the top-1 lists:
    # user 0 -> item 2 (item 0, 1 are training items), user 1 -> item 3, user 2 -> item 3.
    scores = torch.tensor([[9.0, 8.0, 1.0, 0.0], [9.0, 0.0, 2.0, 3.0], [9.0, 1.0, 2.0, 3.0]])
    data = make_data(3, 4, train, [[0, 1, 2], [3, 3, 3]], [[0, 1, 2], [2, 2, 1]])
    for batch_size in (1, 2, 3):
        out = evaluate(TableModel(scores), data, "valid", ks=(1,), batch_size=batch_size)
        assert out["coverage@1"] == pytest.approx(2 / 4)  # items 2 and 3
        assert out["avg_pop@1"] == pytest.approx((1 + 0 + 0) / 3)
        # -log2(p / U) with p clamped to 1 for the never-seen item 3: log2(3) each.
        assert out["novelty@1"] == pytest.approx(math.log2(3))
        # counts [0, 0, 1, 2] sorted ascending; sum (2j - 5) c_j = 1 * 1 + 3 * 2 = 7
        assert out["gini@1"] == pytest.approx(7 / (4 * 3))
    assert "coverage@1" not in evaluate(
        TableModel(scores), data, "valid", ks=(1,), beyond_accuracy=False
    )
