import pytest
import torch
from torch.func import functional_call

from pyg_multirec.nn import KNNStructureLayer, LightGCNConv, knn_item_graph

NUM_ITEMS, IN_CHANNELS, OUT_CHANNELS, K = 25, 12, 6, 4


def features(seed: int = 0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(NUM_ITEMS, IN_CHANNELS, generator=gen, dtype=dtype)


def to_dense(edge_index, edge_weight, n=NUM_ITEMS):
    dense = torch.zeros(n, n, dtype=edge_weight.dtype)
    return dense.index_put((edge_index[1], edge_index[0]), edge_weight, accumulate=True)


def dense_knn(e, k, suppress_negative):
    # MICRO eq. 1-3 on a dense similarity matrix; torch.topk passes gradient to kept entries.
    norm = e.norm(dim=1, keepdim=True)
    sim = (e @ e.t()) / (norm * norm.t())
    values, idx = sim.topk(k, dim=1)
    if suppress_negative:
        values = values.clamp_min(0)
    s_hat = torch.zeros_like(sim).scatter(1, idx, values)
    d = s_hat.sum(1)
    inv = torch.where(d > 0, d.clamp_min(1e-30) ** -0.5, torch.zeros_like(d))
    return inv[:, None] * s_hat * inv[None, :]


def dense_reference(layer, x):
    s_init = dense_knn(x, layer.k, layer.suppress_negative)
    a_learned = dense_knn(layer.lin(x), layer.k, layer.suppress_negative)  # eq. 4 + eq. 1-3
    return layer.skip_lambda * s_init + (1 - layer.skip_lambda) * a_learned  # eq. 5


@pytest.mark.parametrize("skip_lambda", [0.7, 0.9, 0.0])
@pytest.mark.parametrize("suppress_negative", [True, False])
def test_values_and_gradients_match_dense_reference(skip_lambda, suppress_negative):
    torch.manual_seed(0)
    x = features(1)
    layer = KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, k=K, skip_lambda=skip_lambda,
                              suppress_negative=suppress_negative, block_size=8).double()
    edge_index, edge_weight = layer(x)
    dense = to_dense(edge_index, edge_weight)
    expected = dense_reference(layer, x)
    torch.testing.assert_close(dense, expected)
    probe = torch.randn(NUM_ITEMS, NUM_ITEMS, dtype=torch.float64)
    grads = torch.autograd.grad((dense * probe).sum(), [layer.lin.weight, layer.lin.bias])
    expected_grads = torch.autograd.grad(
        (expected * probe).sum(), [layer.lin.weight, layer.lin.bias])
    assert grads[0].abs().sum() > 0
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)
    # coalesced union of both edge sets
    key = edge_index[0] * NUM_ITEMS + edge_index[1]
    assert bool((key[1:] > key[:-1]).all())


def test_gradcheck_through_learned_weights():
    torch.manual_seed(1)
    x = features(2)
    layer = KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, k=K, rebuild_every=10**6).double()
    layer(x)  # select the neighbours once; gradcheck then perturbs a smooth function
    params = (layer.lin.weight.detach().clone().requires_grad_(),
              layer.lin.bias.detach().clone().requires_grad_())

    def edge_weights(weight, bias):
        return functional_call(layer, {"lin.weight": weight, "lin.bias": bias}, (x,))[1]

    assert torch.autograd.gradcheck(edge_weights, params)


def test_frozen_mode_returns_initial_graph_without_parameters():
    x = features(3, dtype=torch.float32)
    layer = KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, k=K, mode="frozen")
    assert list(layer.parameters()) == []
    edge_index, edge_weight = layer(x)
    expected_index, expected_weight = knn_item_graph(x, K)
    assert torch.equal(edge_index, expected_index)
    torch.testing.assert_close(edge_weight, expected_weight)
    assert layer(x)[0] is edge_index  # computed once


def test_rebuild_every_caches_the_neighbour_selection():
    torch.manual_seed(2)
    x = features(4, dtype=torch.float32)
    layer = KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, k=K, rebuild_every=3)
    layer(x)
    first = layer.learned_neighbors
    _, weight_before = layer(x)
    assert layer.learned_neighbors is first
    with torch.no_grad():
        layer.lin.weight.mul_(-0.5)
    _, weight_after = layer(x)  # third call: still cached, but weights recomputed
    assert layer.learned_neighbors is first
    assert weight_after.requires_grad
    assert not torch.allclose(weight_before, weight_after)
    layer(x)  # fourth call rebuilds
    assert layer.learned_neighbors is not first
    second = layer.learned_neighbors
    layer(x, force_rebuild=True)
    assert layer.learned_neighbors is not second
    layer.rebuild()
    assert layer.learned_neighbors is None
    layer(x)
    assert layer.learned_neighbors is not None


@pytest.mark.parametrize("suppress_negative", [True, False])
def test_union_is_built_once_per_selection_and_equals_coalesce(suppress_negative):
    """The edges of both graphs are merged once per neighbour selection; each call adds its
    weights into that union, bit for bit what coalescing the concatenated edges gives."""
    from torch_geometric.utils import coalesce

    from pyg_multirec.nn.knn import COSINE_EPS, knn_edges, normalize_knn_weights

    torch.manual_seed(3)
    x = features(5, dtype=torch.float32)
    layer = KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, k=K, rebuild_every=2,
                              suppress_negative=suppress_negative)
    for call in range(4):
        edge_index, edge_weight = layer(x)
        if call % 2 == 0:
            first = edge_index
        else:  # same selection: the same union tensor, new weights
            assert edge_index is first
        with torch.no_grad():  # the reference: eq. 1-3 and 5 with two coalesce calls
            h = torch.nn.functional.normalize(layer.lin(x), dim=-1, eps=COSINE_EPS)
            nbr = layer.learned_neighbors
            sim = (h.unsqueeze(1) * h[nbr]).sum(-1)
            if suppress_negative:
                sim = sim.clamp_min(0)
            learned = knn_edges(normalize_knn_weights(sim, nbr), nbr, drop_zeros=False)
            ref_index, ref_weight = coalesce(
                torch.cat([layer.init_edge_index, learned[0]], dim=1),
                torch.cat([layer.skip_lambda * layer.init_edge_weight,
                           (1 - layer.skip_lambda) * learned[1]]),
                num_nodes=NUM_ITEMS, reduce="sum")
        assert torch.equal(edge_index, ref_index)
        torch.testing.assert_close(edge_weight.detach(), ref_weight, rtol=1e-6, atol=1e-7)
        with torch.no_grad():
            layer.lin.weight.mul_(-0.7)  # move the learned graph between calls
    layer.rebuild()
    assert layer.union_edge_index is None and layer.union_slot is None
    assert layer(x)[0] is not first


def test_detach_after_first_keeps_the_first_graph_with_gradient_until_the_next_selection():
    torch.manual_seed(3)
    x = features(6, dtype=torch.float32)
    layer = KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, k=K, rebuild_every=10**9,
                              detach_after_first=True)  # fmt: skip
    reference = KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, k=K, rebuild_every=10**9)
    reference.load_state_dict(layer.state_dict())
    with torch.no_grad():  # the selection (as MICRO's on_epoch_start): nothing is kept
        layer(x, force_rebuild=True)
        reference(x, force_rebuild=True)
    assert layer.kept_edge_index is None
    index, weight = layer(x)  # the first call with gradient: as the reference
    ref_index, ref_weight = reference(x)
    assert torch.equal(index, ref_index) and torch.allclose(weight, ref_weight)
    weight.sum().backward()
    assert layer.lin.weight.grad is not None and layer.lin.weight.grad.abs().sum() > 0
    with torch.no_grad():
        layer.lin.weight.mul_(-0.5)
    layer.lin.weight.grad = None
    calls = []
    layer.lin.register_forward_hook(lambda *args: calls.append(1))
    again_index, again_weight = layer(x)  # later calls: the same graph, detached, not recomputed
    assert not calls and not again_weight.requires_grad
    assert torch.equal(again_index, index) and torch.equal(again_weight, weight.detach())
    layer.rebuild()  # a new selection computes again, from the changed transform
    new_index, new_weight = layer(x)
    assert calls and new_weight.requires_grad
    reference.lin.load_state_dict(layer.lin.state_dict())
    reference.rebuild()
    assert torch.allclose(new_weight, reference(x)[1])


def test_errors():
    x = features(5, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"skip_lambda must lie in \[0, 1\]"):
        KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, skip_lambda=1.5)
    with pytest.raises(ValueError, match="mode must be one of"):
        KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, mode="dense")
    with pytest.raises(ValueError, match="detach_after_first must be a bool"):
        KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, detach_after_first="yes")
    for kwargs in ({"rebuild_every": 1}, {"rebuild_every": 5, "mode": "frozen"}):
        with pytest.raises(ValueError, match="detach_after_first needs mode='learned' and"):
            KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, detach_after_first=True, **kwargs)
    with pytest.raises(ValueError, match="rebuild_every must be a positive int"):
        KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, rebuild_every=0)
    with pytest.raises(ValueError, match=r"k \(25\) must be < number of items \(25\)"):
        KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, k=NUM_ITEMS)(x)
    layer = KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, k=K)
    with pytest.raises(ValueError, match="x must have in_channels=12 columns"):
        layer(x[:, :5])
    layer(x)
    with pytest.raises(ValueError, match="initial graph was built for 25"):
        layer(x[:20])


def test_trains_loss_falls():
    torch.manual_seed(3)
    x = features(6, dtype=torch.float32)
    layer = KNNStructureLayer(IN_CHANNELS, OUT_CHANNELS, k=K, skip_lambda=0.5)
    conv = LightGCNConv(normalize=False)
    emb = torch.nn.Parameter(torch.randn(NUM_ITEMS, 4) * 0.1)
    target = torch.randn(NUM_ITEMS, 4)
    optimizer = torch.optim.Adam([emb, *layer.parameters()], lr=0.05)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        edge_index, edge_weight = layer(x)
        loss = (emb + conv(emb, edge_index, edge_weight) - target).square().mean()
        loss.backward()
        assert layer.lin.weight.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
