import pytest
import torch
from torch_geometric import EdgeIndex
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
from torch_geometric.nn import LGConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor

import pyg_multirec.nn.lightgcn_conv as conv_module
from pyg_multirec.nn import LightGCNConv, bipartite_to_homogeneous

NUM_NODES = 40
NUM_EDGES = 200
CHANNELS = 8


def random_graph(seed: int = 0, symmetric: bool = False):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, NUM_NODES, (2, NUM_EDGES), generator=gen)
    if symmetric:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    edge_weight = torch.rand(edge_index.size(1), generator=gen) + 0.1
    x = torch.randn(NUM_NODES, CHANNELS, generator=gen)
    return x, edge_index, edge_weight


def dense_reference(x, edge_index, edge_weight, normalize):
    # X' = D^{-1/2} A D^{-1/2} X with A[i, j] = sum of weights of edges j -> i.
    n = x.size(0)
    adj = torch.zeros(n, n, dtype=x.dtype).index_put(
        (edge_index[1], edge_index[0]), edge_weight, accumulate=True
    )
    if normalize:
        deg = adj.sum(dim=1)
        inv = torch.where(deg > 0, deg.clamp_min(1e-30) ** -0.5, torch.zeros_like(deg))
        adj = inv[:, None] * adj * inv[None, :]
    return adj @ x


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
def test_matches_lgconv_values_and_gradients(weighted, normalize, cached, symmetric):
    x, edge_index, edge_weight = random_graph(1, symmetric)
    weight = edge_weight if weighted else None
    x_ours = x.clone().requires_grad_()
    x_ref = x.clone().requires_grad_()
    w_ours = w_ref = None
    if weighted and not cached:
        w_ours = edge_weight.clone().requires_grad_()
        w_ref = edge_weight.clone().requires_grad_()
    else:
        w_ours = w_ref = weight
    conv = LightGCNConv(cached=cached, normalize=normalize)
    out = conv(x_ours, edge_index, w_ours)
    expected = LGConv(normalize=normalize)(x_ref, edge_index, w_ref)
    torch.testing.assert_close(out, expected)
    target = torch.randn_like(out)
    (out * target).sum().backward()
    (expected * target).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    if weighted and not cached:
        torch.testing.assert_close(w_ours.grad, w_ref.grad)
    if cached:  # the second call goes through the cache and still agrees
        torch.testing.assert_close(conv(x, edge_index, weight), expected.detach())


def test_matches_dense_reference_with_duplicates_and_isolated_nodes():
    x = torch.randn(6, 3, dtype=torch.float64)
    # 0 -> 1 appears twice; nodes 4 and 5 are isolated
    edge_index = torch.tensor([[0, 0, 1, 2, 2, 3], [1, 1, 0, 0, 3, 2]])
    edge_weight = torch.tensor([0.5, 1.5, 2.0, 1.0, 3.0, 0.25], dtype=torch.float64)
    for normalize in (True, False):
        out = LightGCNConv(normalize=normalize)(x, edge_index, edge_weight)
        torch.testing.assert_close(out, dense_reference(x, edge_index, edge_weight, normalize))
    assert torch.equal(out[4:], torch.zeros(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck_float64(normalize):
    gen = torch.Generator().manual_seed(2)
    edge_index = torch.randint(0, 10, (2, 30), generator=gen)
    x = torch.randn(10, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    edge_weight = (torch.rand(30, generator=gen, dtype=torch.float64) + 0.1).requires_grad_()
    conv = LightGCNConv(normalize=normalize)
    assert torch.autograd.gradcheck(lambda a, w: conv(a, edge_index, w), (x, edge_weight))
    cached = LightGCNConv(cached=True, normalize=normalize)
    assert torch.autograd.gradcheck(lambda a: cached(a, edge_index, edge_weight.detach()), (x,))


def test_uncached_conv_reuses_the_structure_of_the_same_edge_index(monkeypatch):
    """cached=False builds the CSR structure once for a tensor that comes back unchanged
    (new weights each call), and anew for another tensor or one modified in place."""
    x, edge_index, edge_weight = random_graph(5)
    built = []
    original = conv_module.CSRAdjacency

    def counting(*args):
        built.append(1)
        return original(*args)

    monkeypatch.setattr(conv_module, "CSRAdjacency", counting)
    conv = LightGCNConv(normalize=False)
    reference = LGConv(normalize=False)
    for scale in (1.0, 2.0, 0.5):
        weight = (edge_weight * scale).requires_grad_()
        out = conv(x, edge_index, weight)
        torch.testing.assert_close(out, reference(x, edge_index, edge_weight * scale))
        out.sum().backward()  # the transpose of the first call's structure serves again
        ref_weight = (edge_weight * scale).requires_grad_()
        reference(x, edge_index, ref_weight).sum().backward()
        torch.testing.assert_close(weight.grad, ref_weight.grad)
    assert len(built) == 1
    conv(x, edge_index.clone(), edge_weight)  # equal values, another tensor: built again
    assert len(built) == 2
    changed = edge_index.clone()
    conv(x, changed, edge_weight)
    changed[0, :10] = (changed[0, :10] + 1) % NUM_NODES  # in place: the version changes
    torch.testing.assert_close(conv(x, changed, edge_weight),
                               reference(x, changed, edge_weight))
    assert len(built) == 4
    conv.reset_parameters()
    conv(x, changed, edge_weight)
    assert len(built) == 5


def test_cache_is_reused_without_renormalising(monkeypatch):
    x, edge_index, _ = random_graph(3, symmetric=True)
    calls = []
    original = conv_module._symmetric_norm
    monkeypatch.setattr(
        conv_module, "_symmetric_norm", lambda *a: calls.append(1) or original(*a)
    )
    conv = LightGCNConv(cached=True)
    first = conv(x, edge_index)
    adjacency = conv._cached_adj[0]
    other_edges = torch.randint(0, NUM_NODES, (2, 10))
    second = conv(x, other_edges)  # ignored: the cached graph is used
    assert conv._cached_adj[0] is adjacency
    assert len(calls) == 1
    torch.testing.assert_close(first, second)
    assert adjacency.is_symmetric  # a symmetric graph is its own transpose (stored once)
    conv.reset_parameters()
    assert conv._cached_adj is None
    torch.testing.assert_close(conv(x, other_edges), LGConv()(x, other_edges))
    assert len(calls) == 2


def test_uncached_normalises_every_call(monkeypatch):
    x, edge_index, _ = random_graph(3)
    calls = []
    original = conv_module._symmetric_norm
    monkeypatch.setattr(
        conv_module, "_symmetric_norm", lambda *a: calls.append(1) or original(*a)
    )
    conv = LightGCNConv()
    conv(x, edge_index)
    conv(x, edge_index)
    assert len(calls) == 2


def test_cached_follows_dtype_change():
    x, edge_index, edge_weight = random_graph(4)
    conv = LightGCNConv(cached=True)
    conv(x, edge_index, edge_weight)
    out = conv(x.double(), edge_index, edge_weight)
    assert out.dtype == torch.float64
    expected = dense_reference(x.double(), edge_index, edge_weight.double(), True)
    # the cached weights were normalised in float32, then cast
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_accepts_torch_sparse_and_edge_index():
    x, edge_index, edge_weight = random_graph(5)
    expected = LGConv()(x, edge_index, edge_weight)
    adj_t = to_torch_csr_tensor(edge_index.flip(0), edge_weight, size=(NUM_NODES, NUM_NODES))
    torch.testing.assert_close(LightGCNConv()(x, adj_t), expected)
    typed = EdgeIndex(edge_index, sparse_size=(NUM_NODES, NUM_NODES))
    torch.testing.assert_close(LightGCNConv()(x, typed, edge_weight), expected)


def test_bipartite_graph_gradients_match_lgconv():
    gen = torch.Generator().manual_seed(6)
    interactions = torch.stack(
        [torch.randint(0, 30, (120,), generator=gen), torch.randint(0, 20, (120,), generator=gen)]
    )
    edge_index = bipartite_to_homogeneous(interactions, 30, 20)
    x = torch.randn(50, 4, generator=gen, requires_grad=True)
    conv = LightGCNConv(cached=True)
    ours = conv(conv(x, edge_index), edge_index)
    ref_conv = LGConv()
    ref = ref_conv(ref_conv(x, edge_index), edge_index)
    torch.testing.assert_close(ours, ref)
    g_ours, = torch.autograd.grad(ours.square().sum(), x)
    g_ref, = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(g_ours, g_ref)
    assert conv._cached_adj[0].is_symmetric


def test_errors():
    x, edge_index, edge_weight = random_graph(7)
    conv = LightGCNConv()
    with pytest.raises(ValueError, match=r"edge_index must have shape \[2, num_edges\]"):
        conv(x, edge_index.t())
    with pytest.raises(ValueError, match=r"edge_index entries must lie in \[0, 40\)"):
        conv(x, edge_index + NUM_NODES)
    with pytest.raises(TypeError, match="edge_index must be an integer tensor"):
        conv(x, edge_index.float())
    with pytest.raises(ValueError, match=r"edge_weight must have shape \[200\]"):
        conv(x, edge_index, edge_weight[:-1])
    with pytest.raises(ValueError, match="x must be a 2-D tensor"):
        conv(x[0], edge_index)
    with pytest.raises(ValueError, match="cached=True treats the graph as a constant"):
        LightGCNConv(cached=True)(x, edge_index, edge_weight.requires_grad_())
    with pytest.raises(ValueError, match="aggr must be 'add'"):
        LightGCNConv(aggr="mean")


def test_trains_loss_falls():
    torch.manual_seed(0)
    _, edge_index, _ = random_graph(8, symmetric=True)
    conv = LightGCNConv(cached=True)
    with torch.no_grad():  # a reachable target
        x = conv(conv(torch.randn(NUM_NODES, CHANNELS), edge_index), edge_index)
    emb = torch.nn.Parameter(torch.randn(NUM_NODES, CHANNELS))
    optimizer = torch.optim.Adam([emb], lr=0.05)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = (conv(conv(emb, edge_index), edge_index) - x).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_explain_mode_uses_the_edgewise_path():
    # an explainer scales message e by mask[e], in input edge order
    x, edge_index, edge_weight = random_graph(9)
    conv = LightGCNConv()
    mask = torch.rand(NUM_EDGES)
    set_masks(conv, torch.nn.Parameter(mask), edge_index, apply_sigmoid=False)
    out = conv(x, edge_index, edge_weight)
    clear_masks(conv)
    _, norm_weight = gcn_norm(edge_index, edge_weight, NUM_NODES, add_self_loops=False)
    torch.testing.assert_close(out, dense_reference(x, edge_index, norm_weight * mask, False))


def test_value_checks_off_skips_the_range_check(monkeypatch):
    import pyg_multirec
    from pyg_multirec.losses import value_checks as losses_value_checks

    assert pyg_multirec.value_checks is losses_value_checks  # one library-wide switch
    x, edge_index, _ = random_graph(9)
    calls = []
    original = conv_module.out_of_range
    monkeypatch.setattr(
        conv_module, "out_of_range", lambda *a: calls.append(1) or original(*a)
    )
    with pyg_multirec.value_checks(False):
        out = LightGCNConv()(x, edge_index)
        with pytest.raises(ValueError, match=r"edge_index must have shape \[2, num_edges\]"):
            LightGCNConv()(x, edge_index.t())  # shapes are still checked
    assert calls == []
    torch.testing.assert_close(out, LGConv()(x, edge_index))
    with pytest.raises(ValueError, match=r"edge_index entries must lie in \[0, 40\).*\[-1, "):
        LightGCNConv()(x, edge_index - 1)
    assert calls == [1]  # back on after the with block
    with pyg_multirec.value_checks(False):  # building a cache checks once, even when off
        with pytest.raises(ValueError, match="edge_index entries must lie in"):
            LightGCNConv(cached=True)(x, edge_index + 1)
    assert calls == [1, 1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_host_sync_from_checks_on_cuda():
    import pyg_multirec

    x, edge_index, _ = random_graph(10)
    x, edge_index = x.cuda(), edge_index.cuda()
    cached = LightGCNConv(cached=True)
    expected = cached(x, edge_index)  # builds the CSR graph (that may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pyg_multirec.value_checks(False):
            LightGCNConv()._normalized_edges(x, edge_index, None)  # no range check
            out = cached(x, edge_index)  # the hot path of a training step
        with pytest.raises(RuntimeError, match="synchroniz"):
            LightGCNConv()._normalized_edges(x, edge_index, None)  # checks on: syncs
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(out, expected)
