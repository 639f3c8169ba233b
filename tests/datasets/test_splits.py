import pytest
import torch

from pyg_multirec.datasets import (
    SyntheticMultiModal,
    cold_start_split,
    holdout_labels,
    validate_data,
)
from tests.datasets.helpers import make_data

SPLITS = ("train", "valid", "test")


def pair_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


@pytest.fixture(scope="module")
def data():
    return SyntheticMultiModal(num_users=200, num_items=100, num_interactions=3000)[0]


def reference_split(data, cold_mask, valid_items):
    """Straight Python re-computation from the item partition (independent reference)."""
    everything = set()
    for s in SPLITS:
        everything |= pair_set(data["user", s, "item"].edge_index)
    cold = set(torch.nonzero(cold_mask).view(-1).tolist())
    train = {(u, i) for u, i in everything if i not in cold}
    users_with_train = {u for u, _ in train}
    valid = {(u, i) for u, i in everything if i in valid_items and u in users_with_train}
    test = {(u, i) for u, i in everything
            if i in cold and i not in valid_items and u in users_with_train}
    return train, valid, test


def test_matches_reference(data):
    out = cold_start_split(data, cold_ratio=0.2, seed=3)
    cold_mask = out["item"].cold_mask
    assert cold_mask.dtype == torch.bool and cold_mask.shape == (100,)
    assert int(cold_mask.sum()) == 20
    valid_items = set(out["user", "valid", "item"].edge_index[1].tolist())
    test_items = set(out["user", "test", "item"].edge_index[1].tolist())
    assert valid_items.isdisjoint(test_items)
    assert valid_items | test_items <= set(torch.nonzero(cold_mask).view(-1).tolist())
    train, valid, test = reference_split(data, cold_mask, valid_items)
    assert pair_set(out["user", "train", "item"].edge_index) == train
    assert pair_set(out["user", "valid", "item"].edge_index) == valid
    assert pair_set(out["user", "test", "item"].edge_index) == test
    # Cold items have no training interaction at all.
    assert not bool(cold_mask[out["user", "train", "item"].edge_index[1]].any())
    info = out.cold_start_info
    assert info["num_cold_items"] == 20
    assert (info["num_valid_items"], info["num_test_items"]) == (10, 10)
    assert (info["num_train"], info["num_valid"], info["num_test"]) == (
        len(train), len(valid), len(test))
    validate_data(out, require_train_per_user=False)
    for s in SPLITS:  # sorted by user, then item
        e = out["user", s, "item"].edge_index
        key = e[0] * 100 + e[1]
        assert bool((key.diff() > 0).all())


def test_input_unchanged_and_features_kept(data):
    before = {s: data["user", s, "item"].edge_index.clone() for s in SPLITS}
    out = cold_start_split(data)
    for s in SPLITS:
        assert torch.equal(data["user", s, "item"].edge_index, before[s])
    assert "cold_mask" not in data["item"] and not hasattr(data, "cold_start_info")
    assert out.modalities == data.modalities
    assert out["item"].image_feat is data["item"].image_feat
    assert out["user"].num_nodes == 200 and out["item"].num_nodes == 100


def test_deterministic_per_seed(data):
    a, b, c = (cold_start_split(data, seed=s) for s in (0, 0, 1))
    assert torch.equal(a["item"].cold_mask, b["item"].cold_mask)
    assert not torch.equal(a["item"].cold_mask, c["item"].cold_mask)


def test_users_without_training_are_kept_and_their_pairs_dropped():
    # Users 0..4 interact with items 0..8; user 5 only with item 9.
    pairs = [(u, i) for u in range(5) for i in range(9)] + [(5, 9)]
    data = make_data(num_users=6, num_items=10)
    for label, s in enumerate(SPLITS):
        chosen = [(u, i) for u, i in pairs if (u + i) % 3 == label]
        data["user", s, "item"].edge_index = torch.tensor(chosen).t()
    for seed in range(100):
        out = cold_start_split(data, cold_ratio=0.3, seed=seed)
        if bool(out["item"].cold_mask[9]):
            break
    else:
        pytest.fail("no seed made item 9 cold")
    assert out["user"].num_nodes == 6
    info = out.cold_start_info
    assert info["num_users_without_train"] == 1
    assert info["num_dropped_valid"] + info["num_dropped_test"] == 1  # the pair (5, 9)
    for s in SPLITS:
        assert 5 not in set(out["user", s, "item"].edge_index[0].tolist())
    with pytest.raises(ValueError, match=r"1 of 6 users have no training interaction.*\[5\]"):
        validate_data(out)
    validate_data(out, require_train_per_user=False)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_bad_ratio(data, ratio):
    with pytest.raises(ValueError, match=r"'cold_ratio' must lie in \(0, 1\)"):
        cold_start_split(data, cold_ratio=ratio)


def test_bad_types(data):
    with pytest.raises(TypeError, match="'cold_ratio'"):
        cold_start_split(data, cold_ratio="0.2")
    with pytest.raises(TypeError, match="'seed'"):
        cold_start_split(data, seed=0.5)


def test_too_few_items():
    with pytest.raises(ValueError, match="too few items"):
        cold_start_split(make_data(num_users=3, num_items=4), cold_ratio=0.2)
    with pytest.raises(ValueError, match="too few items"):
        cold_start_split(make_data(num_users=3, num_items=4), cold_ratio=0.9)


def test_invalid_input_rejected():
    data = make_data()
    del data["user", "test", "item"]
    with pytest.raises(ValueError, match="split 'test'"):
        cold_start_split(data)


def test_empty_cold_split_raises():
    # Items 0..9; every interaction is on items 0 and 1, so most cold items have none.
    data = make_data(num_users=3, num_items=10)
    for s in SPLITS:
        e = data["user", s, "item"].edge_index
        e[1] = e[1] % 2
    with pytest.raises(ValueError, match=r"cold_start_split: the (valid|test) split is empty"):
        for seed in range(50):
            cold_start_split(data, cold_ratio=0.2, seed=seed)


def test_split_emptied_by_dropped_users_raises():
    # Users 0, 1 interact with items 0..8; user 2 only with item 9. With 2 cold items, a seed
    # that puts item 9 alone in the valid half leaves valid only with user 2's pair.
    pairs = [(u, i) for u in range(2) for i in range(9)] + [(2, 9)]
    data = make_data(num_users=3, num_items=10)
    for label, s in enumerate(SPLITS):
        chosen = [(u, i) for u, i in pairs if (u + i) % 3 == label]
        data["user", s, "item"].edge_index = torch.tensor(chosen).t()
    messages = []
    for seed in range(200):
        try:
            cold_start_split(data, cold_ratio=0.2, seed=seed)
        except ValueError as e:
            messages.append(str(e))
    assert any("belong to users without training interactions" in m for m in messages)


@pytest.mark.parametrize("use_order", [False, True])
def test_holdout_labels_matches_per_user_reference(use_order):
    gen = torch.Generator().manual_seed(11)
    num_users = 40
    # user u has u interactions (0, 1, 2 keep all in train), in shuffled input order
    users = torch.arange(num_users).repeat_interleave(torch.arange(num_users))
    users = users[torch.randperm(users.numel(), generator=gen)]
    order = torch.randperm(users.numel(), generator=gen) if use_order else None
    labels = holdout_labels(users, num_users, order)
    sequence = order.tolist() if use_order else list(range(users.numel()))
    for u in range(num_users):
        events = [e for e in sequence if users[e] == u]  # user u's interactions in order
        n = len(events)
        holdout = max(1, round(0.1 * n)) if n >= 3 else 0
        expected = [0] * (n - 2 * holdout) + [1] * holdout + [2] * holdout
        assert labels[events].tolist() == expected, u


def test_holdout_labels_rounds_halves_to_even():
    for n, expected in ((15, [11, 2, 2]), (25, [21, 2, 2]), (35, [27, 4, 4])):
        labels = holdout_labels(torch.zeros(n, dtype=torch.long), 1)
        assert torch.bincount(labels, minlength=3).tolist() == expected
