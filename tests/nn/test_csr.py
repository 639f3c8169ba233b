import pytest
import torch

from pyg_multirec.nn._csr import CSRAdjacency


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_sampled_dot_matches_gathered_rows(dtype):
    gen = torch.Generator().manual_seed(0)
    # duplicate edges (merged into one CSR entry) and nodes 8, 9 without any edge
    edge_index = torch.randint(0, 8, (2, 40), generator=gen)
    edge_index = torch.cat([edge_index, edge_index[:, :5]], dim=1)
    adj = CSRAdjacency(edge_index, 10)
    assert adj.has_duplicates
    a, b = (torch.randn(10, 6, generator=gen).to(dtype) for _ in range(2))
    out = adj.sampled_dot(a, b)
    # row i of A holds the edges into i: entry (row, col) pairs a[row] with b[col]
    expected = torch.stack([a[i].double() @ b[j].double() for i, j in zip(adj.row, adj.col)])
    assert out.dtype == dtype and out.shape == (adj.row.numel(),)
    tol = {torch.bfloat16: 5e-2}.get(dtype, 1e-5)
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)
