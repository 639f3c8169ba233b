import itertools

import pytest
import torch

import pyg_multirec.datasets.synthetic as synthetic
from pyg_multirec.datasets import SyntheticMultiModal, validate_data
from pyg_multirec.datasets.synthetic import sample_without_replacement

SPLITS = ("train", "valid", "test")


def edges(data, split):
    return data["user", split, "item"].edge_index


def recall_at_k(scores, train, target, k=20):
    """Mean Recall@k over users with a target item, training items excluded (reference)."""
    scores = scores.clone()
    scores[train[0], train[1]] = -float("inf")
    top = scores.topk(k, dim=1).indices
    relevant = torch.zeros_like(scores, dtype=torch.bool)
    relevant[target[0], target[1]] = True
    hits = relevant.gather(1, top).sum(1).float()
    num_relevant = relevant.sum(1).float()
    has = num_relevant > 0
    return float((hits[has] / num_relevant[has]).mean())


@pytest.fixture(scope="module")
def default_data():
    return SyntheticMultiModal()[0]


def test_dataset_api():
    dataset = SyntheticMultiModal(num_users=50, num_items=30, num_interactions=400,
                                  modality_dims={"text": 5, "audio": 3})
    assert len(dataset) == 1
    assert dataset.modalities == ["audio", "text"]
    assert (dataset.num_users, dataset.num_items) == (50, 30)
    data = dataset[0]
    validate_data(data)
    assert data.modalities == ["audio", "text"]
    assert data["item"].audio_feat.shape == (30, 3) and data["item"].text_feat.shape == (30, 5)
    assert data["item"].audio_feat.dtype == torch.float32
    assert data["item"].generic_factor.shape == (30, 8)
    assert data["item"].text_unique_factor.shape == (30, 4)
    assert data["user"].generic_preference.shape == (50, 8)
    assert data["user"].audio_unique_preference.shape == (50, 4)
    assert torch.isclose(data["item"].popularity.sum(), torch.tensor(1.0))
    assert "SyntheticMultiModal(users=50" in repr(dataset)


def test_transform():
    def drop_text(data):
        del data["item"].text_feat
        return data

    data = SyntheticMultiModal(num_users=20, num_items=10, num_interactions=100,
                               transform=drop_text)[0]
    assert "text_feat" not in data["item"] and "image_feat" in data["item"]


def test_deterministic_for_a_seed():
    kwargs = dict(num_users=80, num_items=40, num_interactions=900)
    a, b = SyntheticMultiModal(**kwargs)[0], SyntheticMultiModal(**kwargs)[0]
    c = SyntheticMultiModal(**kwargs, seed=1)[0]
    for split in SPLITS:
        assert torch.equal(edges(a, split), edges(b, split))
    for key in ("image_feat", "text_feat", "generic_factor", "popularity"):
        assert torch.equal(a["item"][key], b["item"][key])
        assert not torch.equal(a["item"][key], c["item"][key])
    assert not torch.equal(edges(a, "train"), edges(c, "train"))


def test_counts_splits_and_no_duplicates(default_data):
    data = default_data
    num_users, num_items = 1000, 500
    all_edges = torch.cat([edges(data, s) for s in SPLITS], dim=1)
    assert all_edges.size(1) == 20000  # exactly num_interactions
    keys = all_edges[0] * num_items + all_edges[1]
    assert keys.unique().numel() == keys.numel()  # no (user, item) twice, across splits too
    n = torch.bincount(all_edges[0], minlength=num_users)
    assert int(n.min()) >= 3 and int(n.max()) <= num_items
    assert int(n.max()) > 3 * int(n.float().median())  # long-tailed user activity
    # 8:1:1 per user, reference written with Python's round (ties to even).
    for split in SPLITS:
        degree = torch.bincount(edges(data, split)[0], minlength=num_users)
        tenth = torch.tensor([max(1, round(0.1 * int(k))) for k in n])
        expected = n - 2 * tenth if split == "train" else tenth
        assert torch.equal(degree, expected)
    for split in SPLITS:  # sorted by user
        assert bool((edges(data, split)[0].diff() >= 0).all())


def test_block_size_bounds_memory(monkeypatch):
    seen = []

    def recording(logits, counts, gen):
        seen.append(logits.numel())
        return sample_without_replacement(logits, counts, gen)

    monkeypatch.setattr(synthetic, "MAX_BLOCK_ELEMENTS", 1000)
    monkeypatch.setattr(synthetic, "sample_without_replacement", recording)
    data = SyntheticMultiModal(num_users=95, num_items=100, num_interactions=1000)[0]
    assert len(seen) == 10 and max(seen) <= 1000  # blocks of 10 users x 100 items
    validate_data(data)


def plackett_luce_pair_probs(p):
    """Exact probability of drawing i then j without replacement (independent reference)."""
    return {(i, j): p[i] * p[j] / (1 - p[i]) for i, j in itertools.permutations(range(len(p)), 2)}


@pytest.mark.parametrize("count", [2, 3, 4])
@pytest.mark.parametrize("logits", [[0.0, 1.0, -1.0, 0.5], [2.0, 0.0, -6.0, 1.0]])
def test_sample_without_replacement_matches_plackett_luce(logits, count):
    # Asking for 3 or 4 of 4 items sends many rows (all, with the rare item of the second
    # row) through the Gumbel-top-k completion; the first two draws must still follow the
    # exact successive-sampling probabilities.
    gen = torch.Generator().manual_seed(0)
    num_rows = 40000
    row = torch.tensor(logits)
    p = torch.softmax(row.double(), 0).tolist()
    out = sample_without_replacement(row.expand(num_rows, -1).contiguous(),
                                     torch.full((num_rows,), count), gen)
    draws = out.view(num_rows, count)
    assert bool((draws.sort(dim=1).values.diff(dim=1) > 0).all())  # distinct within a row
    for (i, j), prob in plackett_luce_pair_probs(p).items():
        freq = float(((draws[:, 0] == i) & (draws[:, 1] == j)).double().mean())
        tolerance = 5 * (prob * (1 - prob) / num_rows) ** 0.5 + 1e-4
        assert abs(freq - prob) < tolerance, (i, j, freq, prob)


def test_sample_without_replacement_varying_counts():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 9, generator=gen)
    counts = torch.tensor([0, 1, 9, 3, 0, 5])
    out = sample_without_replacement(logits, counts, gen)
    assert out.numel() == int(counts.sum())
    for chunk, k in zip(out.split(counts.tolist()), counts.tolist()):
        assert chunk.unique().numel() == k
    assert sample_without_replacement(logits[:0], counts[:0], gen).numel() == 0


def test_features_are_noisy_linear_maps_of_planted_factors():
    noise = 0.2
    data = SyntheticMultiModal(num_users=30, num_items=2000, num_interactions=300,
                               modality_dims={"image": 16, "text": 8}, noise=noise)[0]
    item = data["item"]
    for m, other in (("image", "text"), ("text", "image")):
        feat = item[f"{m}_feat"].double()
        own = torch.cat([item.generic_factor, item[f"{m}_unique_factor"]], 1).double()
        coef = torch.linalg.lstsq(own, feat).solution
        residual = (feat - own @ coef).var()
        assert abs(float(residual) / noise**2 - 1) < 0.1
        # Unit signal variance per feature: total variance ~ 1 + noise^2.
        assert abs(float(feat.var()) - (1 + noise**2)) < 0.25
        # The other modality's unique factor explains nothing more.
        both = torch.cat([own, item[f"{other}_unique_factor"].double()], 1)
        coef2 = torch.linalg.lstsq(both, feat).solution
        assert float((feat - both @ coef2).var()) > 0.97 * float(residual)
    noiseless = SyntheticMultiModal(num_users=10, num_items=50, num_interactions=60,
                                    noise=0.0)[0]["item"]
    own = torch.cat([noiseless.generic_factor, noiseless.image_unique_factor], 1).double()
    feat = noiseless.image_feat.double()
    fit = own @ torch.linalg.lstsq(own, feat).solution
    assert torch.allclose(fit, feat, atol=1e-4)


def test_interactions_follow_affinity_and_popularity(default_data):
    data = default_data
    user_latent = torch.cat([data["user"].generic_preference, data["user"].image_unique_preference,
                             data["user"].text_unique_preference], 1)
    item_latent = torch.cat([data["item"].generic_factor, data["item"].image_unique_factor,
                             data["item"].text_unique_factor], 1)
    affinity = user_latent @ item_latent.t() / 16**0.5
    all_edges = torch.cat([edges(data, s) for s in SPLITS], dim=1)
    assert float(affinity[all_edges[0], all_edges[1]].mean()) > float(affinity.mean()) + 0.5
    # Item degree rank-correlates with the planted popularity.
    degree = torch.bincount(all_edges[1], minlength=500).double()
    rank_deg = degree.argsort().argsort().double()
    rank_pop = data["item"].popularity.double().argsort().argsort().double()
    assert float(torch.corrcoef(torch.stack([rank_deg, rank_pop]))[0, 1]) > 0.5


def test_planted_signal_is_learnable(default_data):
    data = default_data
    num_users, num_items = 1000, 500
    train, valid = edges(data, "train"), edges(data, "valid")
    interactions = torch.zeros(num_users, num_items)
    interactions[train[0], train[1]] = 1.0
    gen = torch.Generator().manual_seed(0)
    random = recall_at_k(torch.rand(num_users, num_items, generator=gen), train, valid)
    popularity = recall_at_k(interactions.sum(0).expand(num_users, -1), train, valid)
    # User-kNN: cosine similarity of training rows, 50 neighbours.
    rows = interactions / interactions.norm(dim=1, keepdim=True)
    sim = rows @ rows.t()
    sim.fill_diagonal_(0)
    top = sim.topk(50, dim=1)
    weights = torch.zeros_like(sim).scatter_(1, top.indices, top.values)
    user_knn = recall_at_k(weights @ interactions, train, valid)
    # Content only: each user's mean training-item features against item features.
    feat = torch.cat([data["item"][f"{m}_feat"] for m in data.modalities], 1)
    feat = feat - feat.mean(0)
    profile = interactions @ feat / interactions.sum(1, keepdim=True)
    content = recall_at_k(profile @ feat.t(), train, valid)
    assert popularity > 2 * random
    # Personal taste dominates popularity: both the collaborative and the content-only
    # scores beat the popularity ranking clearly.
    assert user_knn > popularity + 0.1
    assert content > popularity + 0.1


def test_it_trains_mf_bpr_loss_falls(default_data):
    torch.manual_seed(0)
    train = edges(default_data, "train")
    users_emb = torch.nn.Parameter(0.1 * torch.randn(1000, 16))
    items_emb = torch.nn.Parameter(0.1 * torch.randn(500, 16))
    optimizer = torch.optim.Adam([users_emb, items_emb], lr=0.05)
    losses = []
    for _ in range(30):
        neg = torch.randint(0, 500, (train.size(1),))
        diff = (users_emb[train[0]] * (items_emb[train[1]] - items_emb[neg])).sum(1)
        loss = -torch.nn.functional.logsigmoid(diff).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_amazon_baby_size_is_fast_and_exact():
    # Sizes of Amazon Baby; small feature widths keep the test fast (the widths only cost
    # one random matrix each).
    dataset = SyntheticMultiModal(19445, 7050, 160792, {"image": 16, "text": 8})
    data = dataset[0]
    assert sum(edges(data, s).size(1) for s in SPLITS) == 160792
    assert data["user"].num_nodes == 19445 and data["item"].num_nodes == 7050


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_users=10, num_items=5, num_interactions=29), ValueError,
     r"'num_interactions' must lie in \[30, 50\]"),
    (dict(num_users=10, num_items=5, num_interactions=51), ValueError, "'num_interactions'"),
    (dict(num_items=2), ValueError, "'num_items' must be >= 3"),
    (dict(num_users=0), ValueError, "'num_users' must be >= 1"),
    (dict(num_users=2.5), TypeError, "'num_users' must be an int"),
    (dict(modality_dims={}), ValueError, "'modality_dims' must be a non-empty mapping"),
    (dict(modality_dims=[("image", 3)]), ValueError, "'modality_dims'"),
    (dict(modality_dims={"image": 0}), ValueError, r"'modality_dims\['image'\]' must be >= 1"),
    (dict(noise=-0.1), ValueError, "'noise'"),
    (dict(temperature=0.0), ValueError, "'temperature' must be a finite number > 0"),
    (dict(popularity_exponent=float("nan")), ValueError, "'popularity_exponent'"),
    (dict(generic_dim=0), ValueError, "'generic_dim'"),
    (dict(seed="0"), TypeError, "'seed'"),
])
def test_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        SyntheticMultiModal(**kwargs)
