import pytest
import torch

from pyg_multirec.nn import bipartite_to_homogeneous, gather_rows


def test_bipartite_to_homogeneous_matches_block_adjacency():
    num_users, num_items = 4, 3
    interactions = torch.tensor([[0, 0, 1, 3], [0, 2, 1, 2]])
    edge_index = bipartite_to_homogeneous(interactions, num_users, num_items)
    assert edge_index.shape == (2, 8)
    n = num_users + num_items
    adj = torch.zeros(n, n).index_put((edge_index[0], edge_index[1]), torch.ones(8))
    r = torch.zeros(num_users, num_items)
    r[interactions[0], interactions[1]] = 1.0
    expected = torch.zeros(n, n)
    expected[:num_users, num_users:] = r
    expected[num_users:, :num_users] = r.t()
    assert torch.equal(adj, expected)


def test_bipartite_to_homogeneous_errors():
    interactions = torch.tensor([[0, 1], [0, 1]])
    with pytest.raises(ValueError, match=r"edge_index must have shape \[2, num_interactions\]"):
        bipartite_to_homogeneous(interactions[0], 2, 2)
    with pytest.raises(TypeError, match="edge_index must be an integer tensor"):
        bipartite_to_homogeneous(interactions.float(), 2, 2)
    with pytest.raises(ValueError, match=r"item ids in edge_index must lie in \[0, 1\)"):
        bipartite_to_homogeneous(interactions, 2, 1)
    with pytest.raises(ValueError, match=r"user ids in edge_index must lie in \[0, 1\)"):
        bipartite_to_homogeneous(interactions, 1, 2)
    with pytest.raises(ValueError, match="num_users must be a positive int"):
        bipartite_to_homogeneous(interactions, 0, 2)


def test_bipartite_to_homogeneous_range_check_follows_value_checks(monkeypatch):
    import pyg_multirec
    import pyg_multirec.nn.utils as utils_module

    calls = []
    monkeypatch.setattr(utils_module, "out_of_range", lambda *a: calls.append(1))
    interactions = torch.tensor([[0, 1], [0, 5]])  # item 5 is out of range for 2 items
    with pyg_multirec.value_checks(False):
        edge_index = bipartite_to_homogeneous(interactions, 2, 2)
    assert calls == []
    assert edge_index.tolist() == [[0, 1, 2, 7], [2, 7, 0, 1]]
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"item ids in edge_index must lie in \[0, 2\)"):
        bipartite_to_homogeneous(interactions, 2, 2)


@pytest.mark.parametrize("x_shape, index_shape", [((7, 3), (5,)), ((7, 3), (4, 2)), ((7,), (4, 2))])
def test_gather_rows_equals_indexing_and_its_gradient(x_shape, index_shape):
    x = torch.randn(*x_shape, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, x_shape[0], index_shape)
    out = gather_rows(x, index)
    assert torch.equal(out, x[index])
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * upstream).sum(), x)
    (expected,) = torch.autograd.grad((x[index] * upstream).sum(), x)
    assert torch.allclose(grad, expected)
    torch.autograd.gradcheck(lambda t: gather_rows(t, index), (x,))


def test_gather_rows_gradient_sums_repeated_ids_in_index_order(two_threads):
    # 4,096 x 64 gradient values, 20 distinct rows: above the size from which the CPU
    # backward of x[index] adds with atomics on several threads (it missed this reference
    # in 20 of 20 tries when this test was written); gather_rows must match it every time.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 64, requires_grad=True)
    index = torch.randint(0, 20, (4096,), generator=gen)
    upstream = torch.randn(4096, 64, generator=gen)
    expected = torch.zeros(200, 64).index_add_(0, index, upstream)  # serial, index order
    for _ in range(10):
        (grad,) = torch.autograd.grad((gather_rows(x, index) * upstream).sum(), x)
        assert torch.equal(grad, expected)
