import time

import pytest
import torch
import torch.nn.functional as F

import pyg_multirec.sampling as sampling
from pyg_multirec.sampling import BPRSampler, interaction_keys, sample_negatives

# 99.9 % quantile of the chi-square distribution with 14 degrees of freedom.
CHI2_14_999 = 36.12


def random_edges(num_users, num_items, density, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(num_users, num_items, generator=gen) < density
    mask[:, 0] = False  # nobody has seen every item
    mask[torch.arange(num_users), torch.randint(1, num_items, (num_users,), generator=gen)] = True
    return mask.nonzero().t().contiguous()


def chi_square(counts):
    expected = counts.sum() / counts.numel()
    return float(((counts - expected) ** 2 / expected).sum())


def test_epoch_covers_every_edge_once():
    edges = random_edges(30, 20, 0.3)
    sampler = BPRSampler(edges, 30, 20, batch_size=7)
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-edges.size(1) // 7)
    users = torch.cat([b[0] for b in batches])
    pos = torch.cat([b[1] for b in batches])
    assert all(b[0].numel() <= 7 and b[2].shape == b[0].shape for b in batches)
    got = sorted(zip(users.tolist(), pos.tolist()))
    assert got == sorted(zip(edges[0].tolist(), edges[1].tolist()))


def test_negatives_never_in_training_set():
    num_users, num_items = 300, 60
    edges = random_edges(num_users, num_items, 0.4, seed=1)
    train = set(zip(edges[0].tolist(), edges[1].tolist()))
    sampler = BPRSampler(edges, num_users, num_items, batch_size=512, num_negatives=4)
    for users, _, neg in sampler:
        assert neg.shape == (users.numel(), 4)
        assert ((neg >= 0) & (neg < num_items)).all()
        pairs = zip(users.repeat_interleave(4).tolist(), neg.reshape(-1).tolist())
        assert not any(pair in train for pair in pairs)


def test_dense_user_takes_the_exact_fallback(monkeypatch):
    # user 0 has seen all items but 7; rejection almost never succeeds in 2 rounds
    num_items = 200
    items = torch.tensor([i for i in range(num_items) if i != 7])
    edges = torch.stack([torch.zeros_like(items), items])
    monkeypatch.setattr(sampling, "MAX_REJECTION_ROUNDS", 2)
    keys = interaction_keys(edges, num_items)
    neg = sample_negatives(torch.zeros(1000, dtype=torch.long), keys, num_items)
    assert (neg == 7).all()


@pytest.mark.parametrize("rounds", [10, 0])
def test_negatives_are_uniform_over_free_items(monkeypatch, rounds):
    # rounds = 0 forces every draw through the exact (bisection) path
    monkeypatch.setattr(sampling, "MAX_REJECTION_ROUNDS", rounds)
    num_items = 20
    seen = torch.tensor([0, 3, 4, 9, 19])
    edges = torch.stack([torch.zeros_like(seen), seen])
    keys = interaction_keys(edges, num_items)
    gen = torch.Generator().manual_seed(0)
    neg = sample_negatives(torch.zeros(30000, dtype=torch.long), keys, num_items, generator=gen)
    counts = torch.bincount(neg, minlength=num_items).double()
    assert counts[seen].sum() == 0
    free = torch.ones(num_items, dtype=torch.bool)
    free[seen] = False
    assert chi_square(counts[free]) < CHI2_14_999


def test_deterministic_per_seed_and_epochs_differ():
    edges = random_edges(50, 40, 0.2)

    def run(seed, epochs=2):
        sampler = BPRSampler(edges, 50, 40, batch_size=64, seed=seed)
        return [[torch.cat(parts) for parts in zip(*sampler)] for _ in range(epochs)]

    a, b, c = run(0), run(0), run(1)
    for x, y in zip(a, b):
        assert all(torch.equal(u, v) for u, v in zip(x, y))
    assert not torch.equal(a[0][0], a[1][0])  # epoch 0 and 1 are shuffled differently
    assert not torch.equal(a[0][2], c[0][2])

    sampler = BPRSampler(edges, 50, 40, batch_size=64, seed=0)
    sampler.set_epoch(1)
    again = [torch.cat(parts) for parts in zip(*sampler)]
    assert all(torch.equal(u, v) for u, v in zip(again, a[1]))


def test_no_shuffle_keeps_edge_order():
    edges = random_edges(20, 10, 0.3)
    sampler = BPRSampler(edges, 20, 10, batch_size=8, shuffle=False)
    users = torch.cat([u for u, _, _ in sampler])
    assert torch.equal(users, edges[0])


def test_speed_one_million_edges():
    num_users, num_items, num_edges = 100_000, 50_000, 1_000_000
    gen = torch.Generator().manual_seed(0)
    edges = torch.stack(
        [
            torch.randint(num_users, (num_edges,), generator=gen),
            torch.randint(num_items, (num_edges,), generator=gen),
        ]
    )
    tic = time.perf_counter()
    sampler = BPRSampler(edges, num_users, num_items, batch_size=2048)
    num = sum(neg.numel() for _, _, neg in sampler)
    seconds = time.perf_counter() - tic
    print(f"BPRSampler: 1M edges, {len(sampler)} batches of 2048 in {seconds:.2f} s")
    assert num == num_edges


def test_it_trains_matrix_factorisation_loss_falls():
    torch.manual_seed(0)
    num_users, num_items = 40, 30
    edges = random_edges(num_users, num_items, 0.2, seed=2)
    user = torch.nn.Embedding(num_users, 16)
    item = torch.nn.Embedding(num_items, 16)
    optimizer = torch.optim.Adam([*user.parameters(), *item.parameters()], lr=0.05)
    sampler = BPRSampler(edges, num_users, num_items, batch_size=64, seed=3)

    def epoch_loss():
        total = 0.0
        for users, pos, neg in sampler:
            u = user(users)
            diff = (u * item(pos)).sum(-1) - (u * item(neg)).sum(-1)
            loss = -F.logsigmoid(diff).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * users.numel()
        return total / edges.size(1)

    first = epoch_loss()
    for _ in range(5):
        last = epoch_loss()
    assert last < 0.5 * first


def test_user_with_every_item_raises():
    edges = torch.tensor([[0, 0, 0, 1], [0, 1, 2, 0]])
    with pytest.raises(ValueError, match="user 0 has interacted with all 3 items"):
        BPRSampler(edges, 2, 3, batch_size=2)
    keys = interaction_keys(edges, 3)
    with pytest.raises(ValueError, match="user 0 has interacted with all 3 items"):
        sample_negatives(torch.tensor([1, 0]), keys, 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"edge_index": torch.zeros(2, 0, dtype=torch.long)}, ValueError, "empty"),
        ({"edge_index": torch.zeros(3, 2, dtype=torch.long)}, ValueError, r"shape \(2, E\)"),
        ({"edge_index": torch.zeros(2, 2)}, TypeError, "long tensor"),
        ({"edge_index": torch.tensor([[5], [0]])}, ValueError, r"user ids .*\[0, 4\).*5"),
        ({"edge_index": torch.tensor([[0], [-1]])}, ValueError, r"item ids .*-1"),
        ({"batch_size": 0}, ValueError, "'batch_size' must be >= 1"),
        ({"batch_size": 2.5}, TypeError, "'batch_size' must be an int"),
        ({"num_negatives": 0}, ValueError, "'num_negatives' must be >= 1"),
        ({"num_items": 0}, ValueError, "'num_items' must be >= 1"),
        ({"seed": "a"}, TypeError, "'seed' must be an int"),
        ({"pairs": "items"}, ValueError, r"'pairs' must be one of \('edges', 'users'\)"),
        ({"pairs": "users", "shuffle": False}, ValueError, "shuffle=False keeps the edge order"),
    ],
)
def test_sampler_errors(kwargs, error, match):
    args = {
        "edge_index": torch.tensor([[0, 1, 3], [1, 2, 0]]),
        "num_users": 4,
        "num_items": 5,
        "batch_size": 2,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        BPRSampler(**args)


def test_sample_negatives_errors():
    keys = torch.tensor([1, 5])
    with pytest.raises(TypeError, match="'users' must be a 1-dimensional long"):
        sample_negatives(torch.tensor([0.0]), keys, 4)
    with pytest.raises(TypeError, match="'keys' must be"):
        sample_negatives(torch.tensor([0]), keys.float(), 4)
    with pytest.raises(ValueError, match="'users' contains negative ids"):
        sample_negatives(torch.tensor([-1]), keys, 4)


def _pre_option_epoch(edges, num_users, num_items, batch_size, num_negatives, seed, epoch):
    """The sampler's epoch as written before ``negative_items`` existed (reference)."""
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(edges.size(1), generator=generator)
    users, pos = edges[0][order], edges[1][order]
    keys = interaction_keys(edges, num_items)
    neg = sample_negatives(users, keys, num_items, num_negatives, generator=generator)
    return [
        (users[s : s + batch_size], pos[s : s + batch_size], neg[s : s + batch_size])
        for s in range(0, edges.size(1), batch_size)
    ]


@pytest.mark.parametrize("num_negatives", [1, 3])
def test_default_draws_are_unchanged_by_the_negative_items_option(num_negatives):
    edges = random_edges(60, 40, 0.2, seed=4)
    sampler = BPRSampler(edges, 60, 40, batch_size=50, num_negatives=num_negatives, seed=11)
    for epoch in range(2):
        expected = _pre_option_epoch(edges, 60, 40, 50, num_negatives, seed=11, epoch=epoch)
        got = list(sampler)
        assert len(got) == len(expected)
        for batch, ref in zip(got, expected):
            assert all(torch.equal(a, b) for a, b in zip(batch, ref))
    # the full item set as the candidate set reproduces the default draws exactly
    everything = BPRSampler(
        edges, 60, 40, batch_size=50, num_negatives=num_negatives, seed=11,
        negative_items=torch.arange(40),
    )
    default = BPRSampler(edges, 60, 40, batch_size=50, num_negatives=num_negatives, seed=11)
    for a, b in zip(everything, default):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("rounds", [10, 0])
def test_negative_items_restricts_and_stays_uniform(monkeypatch, rounds):
    monkeypatch.setattr(sampling, "MAX_REJECTION_ROUNDS", rounds)
    num_users, num_items = 200, 50
    edges = random_edges(num_users, num_items, 0.3, seed=5)
    allowed = torch.tensor([3, 7, 7, 11, 20, 21, 22, 40, 49], dtype=torch.int32)  # 7 twice
    allowed_set = set(allowed.tolist())
    train = set(zip(edges[0].tolist(), edges[1].tolist()))
    sampler = BPRSampler(
        edges, num_users, num_items, batch_size=300, num_negatives=2, negative_items=allowed
    )
    for _ in range(3):  # three epochs
        for users, _, neg in sampler:
            assert neg.dtype == torch.long
            assert set(neg.reshape(-1).tolist()) <= allowed_set
            pairs = zip(users.repeat_interleave(2).tolist(), neg.reshape(-1).tolist())
            assert not any(pair in train for pair in pairs)
    # one user, many draws: uniform over the allowed items that the user has not seen
    seen = torch.tensor([0, 7, 20, 30])
    one = torch.stack([torch.zeros_like(seen), seen])
    sampler = BPRSampler(one, 1, num_items, batch_size=4, num_negatives=20000,
                         negative_items=allowed)
    neg = next(iter(sampler))[2].reshape(-1)
    free = sorted(allowed_set - set(seen.tolist()))
    counts = torch.bincount(neg, minlength=num_items).double()
    assert counts.sum() == counts[free].sum()
    expected = counts.sum() / len(free)
    # 99.9 % quantile of the chi-square distribution with len(free) - 1 = 5 d.o.f.
    assert float(((counts[free] - expected) ** 2 / expected).sum()) < 20.52


@pytest.mark.parametrize(
    "negative_items, error, match",
    [
        (torch.tensor([], dtype=torch.long), ValueError, "'negative_items' is empty"),
        (torch.tensor([0.0, 1.0]), TypeError, "'negative_items' must hold integer"),
        (torch.tensor([[0, 1]]), ValueError, "'negative_items' must be 1-dimensional"),
        (torch.tensor([0, 5]), ValueError, r"'negative_items' has item ids out of range .*5"),
        (torch.tensor([-1, 2]), ValueError, r"'negative_items' has item ids out of range .*-1"),
        ([0, 1], TypeError, "'negative_items' must be a torch.Tensor"),
        (torch.tensor([1, 2]), ValueError, "user 0 has interacted with all 2 items of the set"),
    ],
)
def test_negative_items_errors(negative_items, error, match):
    edges = torch.tensor([[0, 0, 1], [1, 2, 0]])
    with pytest.raises(error, match=match):
        BPRSampler(edges, 2, 5, batch_size=2, negative_items=negative_items)


def test_user_uniform_pairs():
    # user 0 has 1 pair, user 1 has 3, user 2 has 6, user 3 none: "users" gives each active
    # user a third of the draws and each of its pairs an equal share of the user's draws
    degrees = [1, 3, 6]
    edges = torch.tensor(
        [[u for u, d in enumerate(degrees) for _ in range(d)],
         [i for d in degrees for i in range(d)]]
    )  # fmt: skip
    perm = torch.randperm(edges.size(1), generator=torch.Generator().manual_seed(0))
    edges = edges[:, perm]  # the sampler must not rely on the pairs being grouped by user
    sampler = BPRSampler(edges, num_users=4, num_items=8, batch_size=4, pairs="users")
    assert len(sampler) == 3 and "pairs='users'" in repr(sampler)
    observed = torch.zeros(4, 8, dtype=torch.bool)
    observed[edges[0], edges[1]] = True
    pair_counts = torch.zeros(4, 8)
    rounds = 600
    for _ in range(rounds):
        for users, pos, neg in sampler:
            pair_counts.index_put_((users, pos), torch.ones(users.numel()), accumulate=True)
            assert not observed[users, neg].any()  # negatives stay unobserved
    assert pair_counts.sum() == rounds * edges.size(1)
    assert pair_counts[~observed].sum() == 0  # only training pairs are drawn
    per_user = pair_counts.sum(1)
    assert per_user[3] == 0
    assert chi_square(per_user[:3]) < 13.82  # 99.9 % quantile, 2 degrees of freedom
    for user, degree in enumerate(degrees):
        if degree > 1:
            counts = pair_counts[user, :degree]
            assert chi_square(counts) < {3: 13.82, 6: 20.52}[degree]  # 99.9 %, d - 1 dof


def test_user_uniform_pairs_reproducible_and_default_unchanged():
    edges = random_edges(30, 20, 0.3)

    def epoch(**kwargs):
        return [torch.cat(parts) for parts in zip(*BPRSampler(edges, 30, 20, 16, seed=3, **kwargs))]

    first, again = epoch(pairs="users"), epoch(pairs="users")
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(torch.equal(a, b) for a, b in zip(epoch(), epoch(pairs="edges")))
    assert not torch.equal(first[0], epoch()[0])
