"""LightGCN graph convolution with a cached CSR fast path."""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import WITH_TORCH_SPARSE, Adj, OptTensor, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, spmm, to_edge_index

# torch warns once per process that sparse CSR support is "beta"; the operations used here
# (construction and CSR @ dense) are stable, so the warning is silenced where tensors are built.
_CSR_BETA_WARNING = ".*Sparse CSR tensor support is in beta state.*"


def _csr(crow: Tensor, col: Tensor, values: Tensor, num_nodes: int) -> Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CSR_BETA_WARNING)
        return torch.sparse_csr_tensor(
            crow, col, values, (num_nodes, num_nodes), check_invariants=False
        )


def _argsort(key: Tensor) -> Tensor:
    # torch's CPU sort of int64 keys is several times slower than NumPy's (SIMD) quicksort,
    # and building the CSR order is the main cost of an uncached call; stability is not
    # needed (equal keys are duplicate edges, which are summed).
    if key.device.type == "cpu":
        return torch.from_numpy(np.argsort(key.numpy()))
    return torch.argsort(key)


def _crow_from_sorted_rows(row: Tensor, num_nodes: int) -> Tensor:
    counts = torch.bincount(row, minlength=num_nodes)
    crow = torch.zeros(num_nodes + 1, dtype=torch.long, device=row.device)
    torch.cumsum(counts, dim=0, out=crow[1:])
    return crow


class CSRAdjacency:
    r"""A square sparse matrix :math:`\mathbf{A}` stored in CSR form, together with the
    (lazily built) CSR form of :math:`\mathbf{A}^{\top}` for the backward pass.

    Row :math:`i` of :math:`\mathbf{A}` holds the weights of the edges *into* node :math:`i`,
    so :math:`\mathbf{A}\mathbf{X}` is PyG's ``source_to_target`` sum aggregation
    (``A`` is PyG's ``adj_t``). Duplicate edges are merged (their weights summed), as CSR
    requires distinct column indices per row.

    Args:
        edge_index (torch.Tensor): Edge indices :math:`(2, |\mathcal{E}|)`, row 0 sources,
            row 1 targets.
        num_nodes (int): Number of nodes :math:`|\mathcal{V}|`.
    """

    def __init__(self, edge_index: Tensor, num_nodes: int) -> None:
        src, dst = edge_index[0], edge_index[1]
        self.num_nodes = num_nodes
        self.num_edges = src.numel()
        key = dst * num_nodes + src
        perm = _argsort(key)
        sorted_key = key[perm]
        self.has_duplicates = bool((sorted_key[1:] == sorted_key[:-1]).any())
        if self.has_duplicates:
            sorted_key, inverse = torch.unique_consecutive(sorted_key, return_inverse=True)
            # slot[e]: position in the CSR value array that edge e contributes to.
            self.slot = torch.empty_like(inverse)
            self.slot[perm] = inverse
            self.row = torch.div(sorted_key, num_nodes, rounding_mode="floor")
            self.col = sorted_key - self.row * num_nodes
        else:
            self.perm = perm
            self.row, self.col = dst[perm], src[perm]
        self.crow = _crow_from_sorted_rows(self.row, num_nodes)
        self._transpose: Optional[tuple[Tensor, Tensor, Tensor]] = None
        self._fixed: Optional[tuple[Tensor, Tensor, Tensor]] = None

    def values_from_edges(self, edge_weight: Tensor) -> Tensor:
        """Arranges per-edge weights (input order) into CSR order (differentiable)."""
        if not self.has_duplicates:
            return edge_weight[self.perm]
        out = edge_weight.new_zeros(self.row.numel())
        return out.index_add(0, self.slot, edge_weight)

    def _transpose_structure(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._transpose is None:
            key_t = self.col * self.num_nodes + self.row
            perm_t = _argsort(key_t)
            crow_t = _crow_from_sorted_rows(self.col[perm_t], self.num_nodes)
            self._transpose = (crow_t, self.row[perm_t], perm_t)
        return self._transpose

    def matrix(self, values: Tensor) -> Tensor:
        r"""The CSR tensor :math:`\mathbf{A}` with the given CSR-ordered values."""
        if self._fixed is not None and values is self._fixed[0]:
            return self._fixed[1]
        return _csr(self.crow, self.col, values.detach(), self.num_nodes)

    def transpose_matrix(self, values: Tensor) -> Tensor:
        r"""The CSR tensor :math:`\mathbf{A}^{\top}` with the given CSR-ordered values of
        :math:`\mathbf{A}`."""
        if self._fixed is not None and values is self._fixed[0]:
            return self._fixed[2]
        crow_t, col_t, perm_t = self._transpose_structure()
        return _csr(crow_t, col_t, values.detach()[perm_t], self.num_nodes)

    def fix_values(self, values: Tensor) -> Tensor:
        r"""Freezes ``values`` (detached): builds :math:`\mathbf{A}` and
        :math:`\mathbf{A}^{\top}` once. A symmetric matrix is its own transpose, so it is
        stored once. Returns the frozen values to pass to :meth:`matmul`."""
        values = values.detach()
        adj = _csr(self.crow, self.col, values, self.num_nodes)
        crow_t, col_t, perm_t = self._transpose_structure()
        values_t = values[perm_t]
        symmetric = (
            torch.equal(crow_t, self.crow)
            and torch.equal(col_t, self.col)
            and torch.equal(values_t, values)
        )
        transposed = adj if symmetric else _csr(crow_t, col_t, values_t, self.num_nodes)
        self._fixed = (values, adj, transposed)
        self._transpose = None  # only needed again for other values; rebuilt lazily
        return values

    @property
    def is_symmetric(self) -> bool:
        """Whether the frozen matrix was found symmetric (its transpose shares storage)."""
        return self._fixed is not None and self._fixed[1] is self._fixed[2]

    def to(self, dtype: torch.dtype, device: torch.device) -> tuple[CSRAdjacency, Tensor]:
        """A copy on ``device`` whose frozen values are cast to ``dtype``."""
        assert self._fixed is not None, "only a matrix with fixed values can be moved"
        moved = CSRAdjacency.__new__(CSRAdjacency)
        for name in ("num_nodes", "num_edges", "has_duplicates"):
            setattr(moved, name, getattr(self, name))
        for name in ("perm", "slot", "row", "col", "crow"):
            if hasattr(self, name):
                setattr(moved, name, getattr(self, name).to(device))
        moved._transpose = None
        moved._fixed = None
        return moved, moved.fix_values(self._fixed[0].to(device=device, dtype=dtype))

    def matmul(self, values: Tensor, x: Tensor) -> Tensor:
        r""":math:`\mathbf{A}\mathbf{X}`, differentiable w.r.t. ``x`` and ``values``."""
        return _CSRSpMM.apply(x, values, self)


class _CSRSpMM(torch.autograd.Function):
    r"""``out = A @ x``; backward: ``grad_x = A^T @ grad_out`` with the cached CSR of
    :math:`\mathbf{A}^{\top}` (one spmm, no per-call transpose) and, if needed,
    ``grad_values[e] = <grad_out[row_e], x[col_e]>`` (sampled dense-dense product)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, values: Tensor, adj: CSRAdjacency) -> Tensor:
        ctx.adj = adj
        # x is only needed for the gradient of the values (keeps it alive otherwise).
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, values)
        return adj.matrix(values) @ x

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[OptTensor, OptTensor, None]:
        x, values = ctx.saved_tensors
        adj: CSRAdjacency = ctx.adj
        grad_x = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_x = adj.transpose_matrix(values) @ grad_out
        if ctx.needs_input_grad[1]:
            grad_values = (grad_out[adj.row] * x[adj.col]).sum(dim=-1)
        return grad_x, grad_values, None


def _symmetric_norm(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> Tensor:
    # D^{-1/2} A D^{-1/2}, D = weighted in-degree (as gcn_norm without self-loops).
    src, dst = edge_index[0], edge_index[1]
    deg = edge_weight.new_zeros(num_nodes).index_add(0, dst, edge_weight)
    positive = deg > 0
    deg_inv_sqrt = torch.where(positive, deg.clamp_min(torch.finfo(deg.dtype).tiny), deg)
    deg_inv_sqrt = torch.where(positive, deg_inv_sqrt.rsqrt(), torch.zeros_like(deg))
    # a_i * a_j is commutative, so a symmetric graph gets exactly symmetric weights.
    return edge_weight * (deg_inv_sqrt[src] * deg_inv_sqrt[dst])


class LightGCNConv(MessagePassing):
    r"""The light graph convolution of `"LightGCN: Simplifying and Powering Graph
    Convolution Network for Recommendation" <https://arxiv.org/abs/2002.02126>`_
    (He et al., 2020), used for the user-item graph by SEA (eq. 6-7) and, with
    ``normalize=False``, for item-item graphs (MICRO eq. 6, SEA eq. 12):

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i)}
        \frac{e_{j,i}}{\sqrt{\deg(i)\deg(j)}} \mathbf{x}_j

    with :math:`\deg(i) = \sum_{j} e_{j,i}` (no self-loops), i.e.
    :math:`\mathbf{X}^{\prime} = \mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}\mathbf{X}`.

    Given a plain :obj:`edge_index` (or a PyG :class:`~torch_geometric.EdgeIndex`, or a
    :class:`torch.sparse` ``adj_t``), the (normalised) graph is stored as a CSR matrix and
    propagated with one sparse-dense product in the forward pass; the backward pass is one
    product with a CSR copy of the transpose, built once per graph (a symmetric graph is its
    own transpose and is stored once). Gradients reach :obj:`edge_weight` when it requires
    them (``cached=False`` only). A :class:`torch_sparse.SparseTensor` is accepted when
    :obj:`torch_sparse` is installed and goes through PyG's :func:`spmm`.

    Args:
        cached (bool, optional): If :obj:`True`, the normalised CSR graph (and its
            transpose) are computed on the first call and reused afterwards; later
            :obj:`edge_index` / :obj:`edge_weight` arguments are then ignored. Only for a
            fixed graph; :meth:`reset_parameters` clears the cache. (default: :obj:`False`)
        normalize (bool, optional): If :obj:`False`, :obj:`edge_weight` is used as given
            (e.g. an already normalised item-item graph). (default: :obj:`True`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing` (``aggr`` must stay ``'add'``
            and ``flow`` ``'source_to_target'``).

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F)`,
          edge indices :math:`(2, |\mathcal{E}|)` or sparse :math:`(|\mathcal{V}|,
          |\mathcal{V}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """

    def __init__(self, cached: bool = False, normalize: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("aggr", "add")
        if kwargs["aggr"] != "add":
            raise ValueError(f"aggr must be 'add' for LightGCNConv (got {kwargs['aggr']!r})")
        if kwargs.get("flow", "source_to_target") != "source_to_target":
            raise ValueError(f"flow must be 'source_to_target' (got {kwargs['flow']!r})")
        super().__init__(**kwargs)
        self.cached = cached
        self.normalize = normalize
        self._cached_adj: Optional[tuple[CSRAdjacency, Tensor]] = None
        self._cached_sparse: Optional[Any] = None

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._cached_adj = None
        self._cached_sparse = None

    def forward(self, x: Tensor, edge_index: Adj, edge_weight: OptTensor = None) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise ValueError(f"x must be a 2-D tensor [num_nodes, F] (got {_shape(x)})")
        if WITH_TORCH_SPARSE and isinstance(edge_index, SparseTensor):  # pragma: no cover
            return self._forward_torch_sparse(x, edge_index)
        if self.explain:  # explainers mask messages edge by edge: use the edge-wise path
            edge_index, edge_weight = self._normalized_edges(x, edge_index, edge_weight)
            return self.propagate(edge_index, x=x, edge_weight=edge_weight, adj=None, values=None)
        adj, values = self._adjacency(x, edge_index, edge_weight)
        return self.propagate(adj.matrix(values), x=x, edge_weight=None, adj=adj, values=values)

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(
        self,
        adj_t: Adj,
        x: Tensor,
        adj: Optional[CSRAdjacency] = None,
        values: OptTensor = None,
    ) -> Tensor:
        if adj is not None and values is not None:
            return adj.matmul(values, x)
        return spmm(adj_t, x, reduce=self.aggr)

    # ---------------------------------------------------------------------------------
    def _normalized_edges(
        self, x: Tensor, edge_index: Adj, edge_weight: OptTensor
    ) -> tuple[Tensor, Tensor]:
        num_nodes = x.size(0)
        if is_torch_sparse_tensor(edge_index):
            if edge_weight is not None:
                raise ValueError("edge_weight must be None when edge_index is a sparse tensor")
            (dst, src), edge_weight = to_edge_index(edge_index)
            edge_index = torch.stack([src, dst])
        elif isinstance(edge_index, EdgeIndex):
            edge_index = edge_index.as_tensor()
        _check_edge_index(edge_index, edge_weight, num_nodes)
        edge_index = edge_index.long()

        if edge_weight is None:
            edge_weight = x.new_ones(edge_index.size(1))
        else:
            edge_weight = edge_weight.to(x.dtype)
        if self.cached and edge_weight.requires_grad:
            raise ValueError(
                "edge_weight requires grad, but cached=True treats the graph as a constant; "
                "use cached=False to back-propagate into edge weights"
            )
        if self.normalize:
            edge_weight = _symmetric_norm(edge_index, edge_weight, num_nodes)
        return edge_index, edge_weight

    def _adjacency(
        self, x: Tensor, edge_index: Adj, edge_weight: OptTensor
    ) -> tuple[CSRAdjacency, Tensor]:
        if self.cached and self._cached_adj is not None:
            adj, values = self._cached_adj
            if values.dtype != x.dtype or values.device != x.device:
                self._cached_adj = adj.to(x.dtype, x.device)
            return self._cached_adj

        edge_index, edge_weight = self._normalized_edges(x, edge_index, edge_weight)
        adj = CSRAdjacency(edge_index, x.size(0))
        values = adj.values_from_edges(edge_weight)
        if self.cached:
            values = adj.fix_values(values)
            self._cached_adj = (adj, values)
        return adj, values

    def _forward_torch_sparse(self, x: Tensor, adj_t: Any) -> Tensor:  # pragma: no cover
        if self.normalize:
            if self.cached and self._cached_sparse is not None:
                adj_t = self._cached_sparse
            else:
                adj_t = gcn_norm(adj_t, None, x.size(0), add_self_loops=False, dtype=x.dtype)
                if self.cached:
                    self._cached_sparse = adj_t
        return self.propagate(adj_t, x=x, edge_weight=None, adj=None, values=None)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(cached={self.cached}, normalize={self.normalize})"


def _shape(obj: Any) -> str:
    return str(tuple(obj.shape)) if isinstance(obj, Tensor) else type(obj).__name__


def _check_edge_index(edge_index: Any, edge_weight: OptTensor, num_nodes: int) -> None:
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, num_edges] (got {_shape(edge_index)})")
    if edge_index.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"edge_index must be an integer tensor (got {edge_index.dtype})")
    if edge_index.numel() > 0:
        low, high = int(edge_index.min()), int(edge_index.max())
        if low < 0 or high >= num_nodes:
            raise ValueError(
                f"edge_index entries must lie in [0, {num_nodes}) (x has {num_nodes} rows), "
                f"got range [{low}, {high}]"
            )
    if edge_weight is not None and (
        edge_weight.dim() != 1 or edge_weight.numel() != edge_index.size(1)
    ):
        raise ValueError(
            f"edge_weight must have shape [{edge_index.size(1)}] (got {_shape(edge_weight)})"
        )
