"""The light graph convolution of LightGCN (the CSR product behind it: ``nn/_csr.py``)."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import WITH_TORCH_SPARSE, Adj, OptTensor, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, spmm, to_edge_index

from pyg_multirec._checks import (
    check_edge_index_shape,
    describe,
    out_of_range,
    value_checks_enabled,
)
from pyg_multirec.nn._csr import CSRAdjacency


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
    them (``cached=False`` only). With ``cached=False`` the CSR structure (and transpose) of
    the last :obj:`edge_index` is kept and reused while the same tensor object comes back
    unmodified with new weights, as MICRO's learned graphs do within an epoch. A
    :class:`torch_sparse.SparseTensor` is accepted when :obj:`torch_sparse` is installed and
    goes through PyG's :func:`spmm`.

    Edge indices outside :math:`[0, |\mathcal{V}|)` raise a :class:`ValueError`. That check
    reads the indices back to the host (a GPU stall per uncached call), so with
    ``cached=False`` it is skipped inside :func:`pyg_multirec.value_checks` ``(False)``;
    out-of-range indices then give undefined results. A cached graph is always checked,
    once, when the cache is built.

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
        # cached=False: the CSR structure of the last edge_index tensor, reused while the same
        # tensor (same object, not modified in place) comes back, e.g. MICRO's learned graph,
        # whose edges stay for an epoch while their weights change at every batch
        self._last_structure: Optional[tuple[Tensor, int, int, CSRAdjacency]] = None

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._cached_adj = None
        self._cached_sparse = None
        self._last_structure = None

    def forward(self, x: Tensor, edge_index: Adj, edge_weight: OptTensor = None) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise ValueError(f"x must be a 2-D tensor [num_nodes, F] (got {describe(x)})")
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
        # The range check reads the ids back to the host: skipped while value checks are off,
        # except when building the cache (once per graph, and the graph is then reused).
        check_range = self.cached or value_checks_enabled()
        _check_edge_index(edge_index, edge_weight, num_nodes, check_range)
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

        given = edge_index
        edge_index, edge_weight = self._normalized_edges(x, edge_index, edge_weight)
        adj = self._structure(given, edge_index, x.size(0))
        values = adj.values_from_edges(edge_weight)
        if self.cached:
            values = adj.fix_values(values)
            self._cached_adj = (adj, values)
        return adj, values

    def _structure(self, given: Adj, edge_index: Tensor, num_nodes: int) -> CSRAdjacency:
        """The CSR structure of ``edge_index``: the last one when ``given`` is the plain
        tensor of the previous call, unmodified (its version counter), with as many nodes."""
        last = self._last_structure
        if (last is not None and given is last[0] and given._version == last[1]
                and num_nodes == last[2]):
            return last[3]
        adj = CSRAdjacency(edge_index, num_nodes)
        if not self.cached and type(given) is Tensor and given.layout == torch.strided:
            self._last_structure = (given, given._version, num_nodes, adj)
        return adj

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


def _symmetric_norm(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> Tensor:
    # D^{-1/2} A D^{-1/2}, D = weighted in-degree (as gcn_norm without self-loops).
    src, dst = edge_index[0], edge_index[1]
    deg = edge_weight.new_zeros(num_nodes).index_add(0, dst, edge_weight)
    positive = deg > 0
    deg_inv_sqrt = torch.where(positive, deg.clamp_min(torch.finfo(deg.dtype).tiny), deg)
    deg_inv_sqrt = torch.where(positive, deg_inv_sqrt.rsqrt(), torch.zeros_like(deg))
    # a_i * a_j is commutative, so a symmetric graph gets exactly symmetric weights.
    return edge_weight * (deg_inv_sqrt[src] * deg_inv_sqrt[dst])


def _check_edge_index(
    edge_index: Any, edge_weight: OptTensor, num_nodes: int, check_range: bool = True
) -> None:
    check_edge_index_shape(edge_index, "edge_index")
    bad = out_of_range(edge_index, num_nodes) if check_range else None
    if bad is not None:
        raise ValueError(
            f"edge_index entries must lie in [0, {num_nodes}) (x has {num_nodes} rows), "
            f"got range [{bad[0]}, {bad[1]}]"
        )
    if edge_weight is not None and (
        edge_weight.dim() != 1 or edge_weight.numel() != edge_index.size(1)
    ):
        raise ValueError(
            f"edge_weight must have shape [{edge_index.size(1)}] (got {describe(edge_weight)})"
        )
