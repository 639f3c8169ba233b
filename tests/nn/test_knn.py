import pytest
import torch

from pyg_multirec.nn import LightGCNConv, knn_item_graph, topk_cosine_neighbors

NUM_ITEMS, NUM_FEATURES = 30, 6


def features(seed: int = 0, n: int = NUM_ITEMS, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, NUM_FEATURES, generator=gen, dtype=dtype)


def to_dense(edge_index, edge_weight, n):
    # M[i, j] = weight of edge j -> i (row i aggregates over its neighbours j).
    dense = torch.zeros(n, n, dtype=edge_weight.dtype)
    return dense.index_put((edge_index[1], edge_index[0]), edge_weight, accumulate=True)


def dense_knn_graph(x, k, suppress_negative=True, weighted=True, normalize=True,
                    self_loops=True):
    # MICRO eq. 1-3 written densely.
    norm = x.norm(dim=1, keepdim=True)
    sim = (x @ x.t()) / (norm * norm.t())  # eq. 1
    if not self_loops:
        sim = sim - torch.eye(len(x), dtype=x.dtype) * 1e9
    _, idx = sim.topk(k, dim=1)
    mask = torch.zeros_like(sim).scatter(1, idx, 1.0)
    kept = sim if weighted else torch.ones_like(sim)
    if suppress_negative:
        kept = kept * (sim > 0)
    s_hat = kept * mask  # eq. 2
    if not normalize:
        return s_hat
    d = s_hat.sum(1)
    inv = torch.where(d > 0, d.clamp_min(1e-30) ** -0.5, torch.zeros_like(d))
    return inv[:, None] * s_hat * inv[None, :]  # eq. 3


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("suppress_negative", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("self_loops", [True, False])
def test_matches_dense_reference(weighted, suppress_negative, normalize, self_loops):
    x = features(1)
    k = 5
    edge_index, edge_weight = knn_item_graph(
        x, k, block_size=7, suppress_negative=suppress_negative, weighted=weighted,
        normalize=normalize, self_loops=self_loops,
    )
    expected = dense_knn_graph(x, k, suppress_negative, weighted, normalize, self_loops)
    dense = to_dense(edge_index, edge_weight, NUM_ITEMS)
    torch.testing.assert_close(dense, expected)
    assert torch.equal(dense != 0, expected != 0)  # the same edge set
    assert edge_weight.ne(0).all()
    assert edge_index.size(1) <= NUM_ITEMS * k
    # coalesced: sorted by (source, target), no duplicates
    key = edge_index[0] * NUM_ITEMS + edge_index[1]
    assert bool((key[1:] > key[:-1]).all())


def test_edge_direction_and_self_loops():
    x = features(2)
    edge_index, _ = knn_item_graph(x, 3)
    # every item is its own nearest neighbour and has exactly k incoming edges
    assert torch.equal(torch.bincount(edge_index[1], minlength=NUM_ITEMS),
                       torch.full((NUM_ITEMS,), 3))
    assert (edge_index[0] == edge_index[1]).sum() == NUM_ITEMS
    edge_index, _ = knn_item_graph(x, 3, self_loops=False)
    assert (edge_index[0] == edge_index[1]).sum() == 0


@pytest.mark.parametrize("block_size", [1, 4, 29, 30, 1024])
def test_block_size_does_not_change_the_result(block_size):
    x = features(3, dtype=torch.float32)
    full_index, full_weight = knn_item_graph(x, 4, block_size=NUM_ITEMS)
    edge_index, edge_weight = knn_item_graph(x, 4, block_size=block_size)
    assert torch.equal(edge_index, full_index)
    torch.testing.assert_close(edge_weight, full_weight)


def test_topk_cosine_neighbors_matches_dense_topk():
    x = features(4).requires_grad_()
    neighbors = topk_cosine_neighbors(x, 6, block_size=8)
    assert neighbors.shape == (NUM_ITEMS, 6) and not neighbors.requires_grad
    unit = x.detach() / x.detach().norm(dim=1, keepdim=True)
    expected = (unit @ unit.t()).topk(6, dim=1).indices
    assert torch.equal(neighbors, expected)
    assert torch.equal(neighbors[:, 0], torch.arange(NUM_ITEMS))
    without_self = topk_cosine_neighbors(x, 6, self_loops=False)
    off_diagonal = unit @ unit.t() - 2 * torch.eye(NUM_ITEMS, dtype=x.dtype)
    assert torch.equal(without_self, off_diagonal.topk(6, dim=1).indices)


def test_k_equal_to_number_of_items_is_the_full_graph():
    x = features(5, n=6)
    edge_index, edge_weight = knn_item_graph(x, 6, suppress_negative=False, normalize=False)
    torch.testing.assert_close(to_dense(edge_index, edge_weight, 6),
                               dense_knn_graph(x, 6, False, True, False))


def test_propagation_over_knn_graph_with_lightgcn_conv():
    # MICRO eq. 6 / SEA eq. 12: H' = S~ H, via LightGCNConv(normalize=False)
    x = features(6)
    edge_index, edge_weight = knn_item_graph(x, 5)
    h = torch.randn(NUM_ITEMS, 4, dtype=torch.float64, requires_grad=True)
    h_ref = h.detach().clone().requires_grad_()
    out = LightGCNConv(normalize=False)(h, edge_index, edge_weight)
    expected = dense_knn_graph(x, 5) @ h_ref
    torch.testing.assert_close(out, expected)
    out.sin().sum().backward()
    expected.sin().sum().backward()
    torch.testing.assert_close(h.grad, h_ref.grad)


def test_errors():
    x = features(7)
    with pytest.raises(ValueError, match=r"k \(31\) must be <= number of items \(30\)"):
        knn_item_graph(x, 31)
    with pytest.raises(ValueError, match=r"k \(30\) must be <= number of items - 1 \(29\)"):
        knn_item_graph(x, 30, self_loops=False)
    with pytest.raises(ValueError, match=r"k \(0\) must be >= 1"):
        knn_item_graph(x, 0)
    with pytest.raises(ValueError, match="x must be 2-D"):
        knn_item_graph(x[0], 3)
    bad = x.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        knn_item_graph(bad, 3)
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        topk_cosine_neighbors(x, 3, block_size=0)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        knn_item_graph(x.long(), 3)


def test_trains_loss_falls():
    torch.manual_seed(0)
    x = features(8, dtype=torch.float32)
    edge_index, edge_weight = knn_item_graph(x, 5)
    conv = LightGCNConv(cached=True, normalize=False)
    target = torch.randn(NUM_ITEMS, 4)
    emb = torch.nn.Parameter(torch.randn(NUM_ITEMS, 4))
    optimizer = torch.optim.Adam([emb], lr=0.05)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = (emb + conv(emb, edge_index, edge_weight) - target).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_nan_scan_follows_value_checks():
    import pyg_multirec

    x = torch.randn(12, 4)
    x[3, 2] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        topk_cosine_neighbors(x, 2)
    with pyg_multirec.value_checks(False):  # no host sync: the scan is skipped
        neighbors = topk_cosine_neighbors(x, 2)
        with pytest.raises(TypeError, match="x must be a floating-point tensor"):
            topk_cosine_neighbors(x.long(), 2)  # dtypes are still checked
    assert neighbors.shape == (12, 2)
