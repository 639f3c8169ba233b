"""The FAISS backend of the kNN item graph and of KNNStructureLayer (``pyg_multirec.ann``)."""

import sys

import pytest
import torch

from pyg_multirec import ann
from pyg_multirec.ann import FaissANN
from pyg_multirec.nn import KNNStructureLayer, knn_item_graph, topk_cosine_neighbors

faiss = pytest.importorskip("faiss")


def clustered(n=400, dim=16, clusters=8, seed=0):
    """Items around a few random centres (ANN search needs some structure)."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=gen)
    labels = torch.randint(0, clusters, (n,), generator=gen)
    return centres[labels] + 0.3 * torch.randn(n, dim, generator=gen)


def exact_topk(x, k, self_loops=True):
    unit = x / x.norm(dim=1, keepdim=True)
    sim = unit @ unit.t()
    if not self_loops:
        sim.fill_diagonal_(-float("inf"))
    return sim.topk(k, dim=1)


def recall(found, expected):
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, expected))
    return hits / expected.numel()


@pytest.mark.parametrize("self_loops", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
def test_flat_index_gives_the_exact_graph(self_loops, weighted):
    x = clustered(n=120, seed=1).double()
    exact = knn_item_graph(x, 6, block_size=17, weighted=weighted, self_loops=self_loops)
    approx = knn_item_graph(x, 6, block_size=17, weighted=weighted, self_loops=self_loops,
                            backend=FaissANN(kind="flat"))
    assert torch.equal(approx[0], exact[0])
    torch.testing.assert_close(approx[1], exact[1])  # float64 weights, exact cosines


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
@pytest.mark.parametrize("self_loops", [True, False])
def test_approximate_neighbours_recall_and_exact_values(kind, self_loops):
    x = clustered(n=600, seed=2)
    k = 10
    config = FaissANN(kind=kind, nlist=8, nprobe=3)
    values, neighbors = ann.approximate_topk_cosine(x, k, 64, self_loops, config)
    expected = exact_topk(x, k, self_loops)
    assert neighbors.shape == (600, k) and neighbors.dtype == torch.long
    assert recall(neighbors, expected.indices) >= 0.95
    if not self_loops:
        assert not (neighbors == torch.arange(600)[:, None]).any()
    for row in neighbors:  # no duplicates within a row
        assert row.unique().numel() == k
    # values: the exact cosine of each selected pair, sorted decreasingly
    unit = x / x.norm(dim=1, keepdim=True)
    torch.testing.assert_close(values, (unit[:, None, :] * unit[neighbors]).sum(-1))
    assert bool((values[:, 1:] <= values[:, :-1]).all())
    # and topk_cosine_neighbors returns the same selection through the public API
    assert torch.equal(topk_cosine_neighbors(x, k, self_loops=self_loops, backend=config),
                       neighbors)


def test_ivf_visiting_every_list_is_exact():
    x = clustered(n=500, seed=3)
    config = FaissANN(kind="ivf", nlist=4, nprobe=4)
    assert config.resolved_nlist(500) == 4
    got = topk_cosine_neighbors(x, 5, backend=config)
    expected = exact_topk(x, 5).indices
    assert recall(got, expected) == 1.0


def test_rows_the_index_leaves_short_are_searched_exactly(monkeypatch):
    x = clustered(n=80, seed=4)
    real_search = ann.search_index

    def short_search(*args, **kwargs):
        scores, ids = real_search(*args, **kwargs)
        ids[::7, -1] = -1  # FAISS's "not found"
        return scores, ids

    monkeypatch.setattr(ann, "search_index", short_search)
    got = topk_cosine_neighbors(x, 4, backend=FaissANN(kind="flat"))
    assert recall(got, exact_topk(x, 4).indices) == 1.0
    assert (got >= 0).all()


def test_structure_layer_with_faiss_matches_exact_and_keeps_gradients():
    x = clustered(n=150, dim=12, seed=5)
    torch.manual_seed(0)
    exact = KNNStructureLayer(12, 8, k=5)
    approx = KNNStructureLayer(12, 8, k=5, backend=FaissANN(kind="flat"))
    approx.load_state_dict(exact.state_dict())
    out_exact = exact(x)
    out_approx = approx(x)
    assert torch.equal(out_exact[0], out_approx[0])
    torch.testing.assert_close(out_approx[1], out_exact[1])
    out_exact[1].square().sum().backward()
    out_approx[1].square().sum().backward()
    assert approx.lin.weight.grad is not None and approx.lin.weight.grad.abs().sum() > 0
    torch.testing.assert_close(approx.lin.weight.grad, exact.lin.weight.grad)
    # the string form uses HNSW and still trains the transform
    hnsw = KNNStructureLayer(12, 8, k=5, backend="faiss")
    hnsw(x)[1].sum().backward()
    assert hnsw.lin.weight.grad.abs().sum() > 0


def test_bad_backend_and_settings():
    x = clustered(n=50)
    with pytest.raises(ValueError, match="backend must be one of"):
        knn_item_graph(x, 3, backend="annoy")
    with pytest.raises(ValueError, match="backend must be one of"):
        KNNStructureLayer(16, 4, backend="hnsw")
    with pytest.raises(ValueError, match="kind must be one of"):
        FaissANN(kind="lsh")
    with pytest.raises(ValueError, match="nprobe must be a positive int"):
        FaissANN(nprobe=0)


def test_missing_faiss_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        knn_item_graph(clustered(n=50), 3, backend="faiss")
    # the exact path does not need it
    knn_item_graph(clustered(n=50), 3)
