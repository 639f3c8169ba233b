import pytest
import torch

from pyg_multirec.nn import LightGCNConv, LightGCNPropagation, bipartite_to_homogeneous

NUM_USERS, NUM_ITEMS, CHANNELS = 12, 9, 5


def bipartite_graph(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    interactions = torch.stack(
        [
            torch.randint(0, NUM_USERS, (40,), generator=gen),
            torch.randint(0, NUM_ITEMS, (40,), generator=gen),
        ]
    ).unique(dim=1)
    x = torch.randn(NUM_USERS + NUM_ITEMS, CHANNELS, generator=gen, dtype=torch.float64)
    return interactions, x


def dense_lightgcn(interactions, x, num_layers, combine):
    # LightGCN eq. 4 with A = [[0, R], [R^T, 0]] built densely.
    r = torch.zeros(NUM_USERS, NUM_ITEMS, dtype=x.dtype)
    r[interactions[0], interactions[1]] = 1.0
    n = NUM_USERS + NUM_ITEMS
    adj = torch.zeros(n, n, dtype=x.dtype)
    adj[:NUM_USERS, NUM_USERS:] = r
    adj[NUM_USERS:, :NUM_USERS] = r.t()
    deg = adj.sum(1)
    inv = torch.where(deg > 0, deg.clamp_min(1e-30) ** -0.5, torch.zeros_like(deg))
    norm = inv[:, None] * adj * inv[None, :]
    layers = [x]
    for _ in range(num_layers):
        layers.append(norm @ layers[-1])
    stacked = torch.stack(layers)
    if combine == "mean":
        return stacked.mean(0)
    if combine == "sum":
        return stacked.sum(0)
    return layers[-1]


@pytest.mark.parametrize("combine", ["mean", "sum", "last"])
@pytest.mark.parametrize("num_layers", [0, 1, 3])
def test_matches_dense_computation(combine, num_layers):
    interactions, x = bipartite_graph()
    edge_index = bipartite_to_homogeneous(interactions, NUM_USERS, NUM_ITEMS)
    model = LightGCNPropagation(num_layers, combine)
    x_ours = x.clone().requires_grad_()
    x_ref = x.clone().requires_grad_()
    out = model(x_ours, edge_index)
    expected = dense_lightgcn(interactions, x_ref, num_layers, combine)
    torch.testing.assert_close(out, expected)
    weight = torch.randn_like(out)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    torch.testing.assert_close(model(x, edge_index), expected.detach())  # cached second call


def test_one_shared_cached_convolution():
    model = LightGCNPropagation(3)
    assert sum(isinstance(m, LightGCNConv) for m in model.modules()) == 1
    assert model.conv.cached
    interactions, x = bipartite_graph(1)
    model(x, bipartite_to_homogeneous(interactions, NUM_USERS, NUM_ITEMS))
    assert model.conv._cached_adj is not None
    model.reset_parameters()
    assert model.conv._cached_adj is None


def test_errors():
    with pytest.raises(ValueError, match="combine must be one of"):
        LightGCNPropagation(2, combine="max")
    with pytest.raises(ValueError, match="num_layers must be a non-negative int"):
        LightGCNPropagation(-1)


def test_trains_loss_falls():
    torch.manual_seed(0)
    interactions, _ = bipartite_graph(2)
    edge_index = bipartite_to_homogeneous(interactions, NUM_USERS, NUM_ITEMS)
    emb = torch.nn.Parameter(torch.randn(NUM_USERS + NUM_ITEMS, CHANNELS) * 0.1)
    model = LightGCNPropagation(2)
    optimizer = torch.optim.Adam([emb], lr=0.05)
    users, items = interactions[0], interactions[1] + NUM_USERS
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        out = model(emb, edge_index)
        negatives = torch.randint(NUM_USERS, NUM_USERS + NUM_ITEMS, items.shape)
        diff = (out[users] * (out[items] - out[negatives])).sum(-1)
        loss = -torch.nn.functional.logsigmoid(diff).mean()  # BPR
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
