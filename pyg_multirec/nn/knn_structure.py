"""MICRO's modality-aware latent structure learning layer (eq. 4-5)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear, Module

from pyg_multirec._checks import check_count
from pyg_multirec.ann import Backend, resolve_backend
from pyg_multirec.nn.knn import (
    COSINE_EPS,
    DEFAULT_BLOCK_SIZE,
    _check_block_size,
    _check_features,
    _knn_pairs,
    knn_item_graph,
    normalize_knn_weights,
    topk_cosine_neighbors,
)
from pyg_multirec.nn.utils import gather_rows

MODES = ("learned", "frozen")
PAPER_SKIP_LAMBDA = 0.7  # MICRO paper; the official code uses 0.9


class KNNStructureLayer(Module):
    r"""Modality-aware latent structure learning from `"Latent Structure Mining with
    Contrastive Modality Fusion for Multimedia Recommendation"
    <https://arxiv.org/abs/2111.00678>`_ (MICRO, eq. 1-5).

    The initial graph :math:`\tilde{\mathbf{S}}^m` is the normalised kNN graph of the raw
    features (:func:`~pyg_multirec.nn.knn_item_graph`, eq. 1-3), computed on the first call
    and kept as a buffer. The learned graph :math:`\tilde{\mathbf{A}}^m` repeats eq. 1-3 on
    transformed features, and both are mixed by a skip connection:

    .. math::
        \tilde{\mathbf{e}}_i^m = \mathbf{W}_m \mathbf{e}_i^m + \mathbf{b}_m, \qquad
        \mathbf{A}^m = \lambda \tilde{\mathbf{S}}^m + (1 - \lambda) \tilde{\mathbf{A}}^m.

    Gradients reach :math:`\mathbf{W}_m, \mathbf{b}_m` through the learned edge weights:
    the neighbours are selected without gradient
    (:func:`~pyg_multirec.nn.topk_cosine_neighbors`), then only the selected cosine
    similarities are recomputed with gradient and normalised. This equals the gradient of
    the dense top-:math:`k` formulation (top-:math:`k` passes gradient only to the kept
    entries) at memory :math:`O(N k d)`. The selection is refreshed every
    ``rebuild_every`` calls (or on :meth:`rebuild` / ``force_rebuild=True``); in between,
    the cached neighbours are reused and only their weights recomputed: the union of both
    graphs' edges is coalesced once per selection, and each call adds the weights into it
    (no sort per call). With
    ``detach_after_first=True`` the layer follows the official MICRO code's schedule
    instead: the graph is computed with gradient only by the first call with gradient
    enabled after each selection, and later calls return that graph detached, without
    recomputing it (no transform of the raw features, no gather: much cheaper
    per call, and :math:`\mathbf{W}_m, \mathbf{b}_m` learn from one batch per selection).

    Edges follow :func:`~pyg_multirec.nn.knn_item_graph`: ``j -> i`` for neighbour
    :math:`j` of item :math:`i`, so :class:`~pyg_multirec.nn.LightGCNConv` with
    ``normalize=False`` computes :math:`\mathbf{A}^m\mathbf{H}` (eq. 6).

    Args:
        in_channels (int): Raw feature size :math:`d_m`.
        out_channels (int): Transformed feature size :math:`d`.
        k (int, optional): Neighbours per item, :math:`k <` number of items.
            (default: :obj:`10`)
        skip_lambda (float, optional): Weight :math:`\lambda \in [0, 1]` of the initial graph;
            the paper uses 0.7, the official code 0.9. (default: :obj:`0.7`)
        mode (str, optional): ``'learned'`` (eq. 4-5) or ``'frozen'`` (the initial graph
            only, no parameters; SEA/FREEDOM style). (default: :obj:`'learned'`)
        rebuild_every (int, optional): Recompute the learned neighbour selection every this
            many forward calls. (default: :obj:`1`)
        block_size (int, optional): Rows of the similarity matrix held at once when
            selecting neighbours. (default: :obj:`1024`)
        suppress_negative (bool, optional): Set negative similarities to zero as in the
            paper (eq. 2 text); the official code does not. (default: :obj:`True`)
        backend (str or FaissANN, optional): How neighbours are selected, for both graphs:
            ``'exact'`` (blockwise) or ``'faiss'`` / a :class:`~pyg_multirec.ann.FaissANN`
            (approximate, for large catalogues; needs ``pip install faiss-cpu``). Only the
            selection is approximate: the learned edge weights of the selected pairs stay
            exact and differentiable. (default: :obj:`'exact'`)
        detach_after_first (bool, optional): Reuse the graph of the first call with
            gradient after each neighbour selection, detached, until the next selection
            (the official MICRO code's schedule; needs ``mode='learned'`` and
            ``rebuild_every > 1``). (default: :obj:`False`)

    Shapes:
        - **input:** raw modality features :math:`(N, d_m)`
        - **output:** coalesced ``edge_index`` :math:`(2, |\mathcal{E}|)` and
          ``edge_weight`` :math:`(|\mathcal{E}|)`, the union of both graphs' edges
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k: int = 10,
        skip_lambda: float = PAPER_SKIP_LAMBDA,
        mode: str = "learned",
        rebuild_every: int = 1,
        block_size: int = DEFAULT_BLOCK_SIZE,
        suppress_negative: bool = True,
        backend: Backend = "exact",
        detach_after_first: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(detach_after_first, bool):
            raise ValueError(f"detach_after_first must be a bool (got {detach_after_first!r})")
        if detach_after_first and (mode != "learned" or rebuild_every == 1):
            raise ValueError(
                "detach_after_first needs mode='learned' and rebuild_every > 1 (a frozen graph "
                "has no gradient, and with rebuild_every=1 every call selects anew, so no graph "
                "is ever reused)"
            )
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("k", k),
            ("rebuild_every", rebuild_every),
        ):
            check_count(value, name)
        if not 0.0 <= float(skip_lambda) <= 1.0:
            raise ValueError(f"skip_lambda must lie in [0, 1] (got {skip_lambda})")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} (got {mode!r})")
        _check_block_size(block_size)
        resolve_backend(backend)  # fails early on an unknown backend
        self.backend = backend
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.k = k
        self.skip_lambda = float(skip_lambda)
        self.mode = mode
        self.rebuild_every = rebuild_every
        self.block_size = block_size
        self.suppress_negative = suppress_negative
        self.detach_after_first = detach_after_first
        self.lin = Linear(in_channels, out_channels) if mode == "learned" else None
        # Recomputed from the raw features on the first call, hence not persistent.
        self.register_buffer("init_edge_index", None, persistent=False)
        self.register_buffer("init_edge_weight", None, persistent=False)
        self.num_items: Optional[int] = None
        self.register_buffer("learned_neighbors", None, persistent=False)
        # The union of both graphs' edges for the current selection (coalesced, as
        # torch_geometric.utils.coalesce orders them) and, for each edge of the initial graph
        # then each (item, neighbour) pair of the learned one, its slot in that union.
        self.register_buffer("union_edge_index", None, persistent=False)
        self.register_buffer("union_slot", None, persistent=False)
        # The graph kept by detach_after_first until the next selection.
        self.register_buffer("kept_edge_index", None, persistent=False)
        self.register_buffer("kept_edge_weight", None, persistent=False)
        self._calls_since_rebuild = 0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.lin is not None:
            self.lin.reset_parameters()
        self.rebuild()

    def rebuild(self) -> None:
        """Forgets the learned neighbour selection; the next call selects anew."""
        self.learned_neighbors = None
        self.union_edge_index = self.union_slot = None
        self.kept_edge_index = self.kept_edge_weight = None
        self._calls_since_rebuild = 0

    def initial_graph(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""The initial graph :math:`\tilde{\mathbf{S}}^m` of the raw features (eq. 1-3),
        computed on the first call and cached in buffers."""
        if self.init_edge_index is None:
            self.num_items = x.size(0)
            self.init_edge_index, self.init_edge_weight = knn_item_graph(
                x, self.k, self.block_size, suppress_negative=self.suppress_negative,
                backend=self.backend,
            )
        return self.init_edge_index, self.init_edge_weight

    def forward(self, x: Tensor, force_rebuild: bool = False) -> tuple[Tensor, Tensor]:
        self._check_input(x)
        init_edge_index, init_edge_weight = self.initial_graph(x)
        if self.mode == "frozen":
            return init_edge_index, init_edge_weight

        select = (
            force_rebuild
            or self.learned_neighbors is None
            or self._calls_since_rebuild >= self.rebuild_every
        )
        if not select and self.kept_edge_index is not None:  # detach_after_first
            self._calls_since_rebuild += 1
            return self.kept_edge_index, self.kept_edge_weight
        h = self.lin(x)  # eq. 4
        if select:
            self.learned_neighbors = topk_cosine_neighbors(
                h, self.k, self.block_size, backend=self.backend
            )
            self.union_edge_index = self.union_slot = None
            self.kept_edge_index = self.kept_edge_weight = None
            self._calls_since_rebuild = 0
        self._calls_since_rebuild += 1
        neighbors = self.learned_neighbors

        h_unit = F.normalize(h, dim=-1, eps=COSINE_EPS)
        similarity = (h_unit.unsqueeze(1) * gather_rows(h_unit, neighbors)).sum(dim=-1)  # eq. 1
        if self.suppress_negative:
            similarity = similarity.clamp_min(0.0)  # eq. 2
        weight = normalize_knn_weights(similarity, neighbors)  # eq. 3
        values = torch.cat(  # eq. 5, one value per edge of each graph
            [self.skip_lambda * init_edge_weight, (1.0 - self.skip_lambda) * weight.reshape(-1)]
        )
        if self.union_edge_index is None:
            self.union_edge_index, self.union_slot = _union_of_edges(init_edge_index, neighbors)
        edge_index = self.union_edge_index
        edge_weight = values.new_zeros(edge_index.size(1)).index_add(0, self.union_slot, values)
        if self.detach_after_first and torch.is_grad_enabled():
            self.kept_edge_index, self.kept_edge_weight = edge_index, edge_weight.detach()
        return edge_index, edge_weight

    def _check_input(self, x: Tensor) -> None:
        _check_features(x)
        num_items = x.size(0)
        if x.size(1) != self.in_channels:
            raise ValueError(
                f"x must have in_channels={self.in_channels} columns (got {x.size(1)})"
            )
        if self.k >= num_items:
            raise ValueError(f"k ({self.k}) must be < number of items ({num_items})")
        if self.num_items is not None and self.num_items != num_items:
            raise ValueError(
                f"x has {num_items} items but the initial graph was built for {self.num_items}"
            )

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, k={self.k}, "
            f"skip_lambda={self.skip_lambda}, mode={self.mode!r}"
            + (", detach_after_first=True" if self.detach_after_first else "")
            + ")"
        )


def _union_of_edges(init_edge_index: Tensor, neighbors: Tensor) -> tuple[Tensor, Tensor]:
    r"""The coalesced union of the initial graph's edges and the learned graph's ``j -> i``
    edges (``j = neighbors[i, t]``), in the order of
    :func:`torch_geometric.utils.coalesce` (by source, then target), and the slot in it of
    each initial edge followed by each pair ``(i, t)`` in row-major order."""
    num_items = neighbors.size(0)
    source, target = _knn_pairs(neighbors)
    source = torch.cat([init_edge_index[0], source])
    target = torch.cat([init_edge_index[1], target])
    key, slot = torch.unique(source * num_items + target, sorted=True, return_inverse=True)
    return torch.stack([key // num_items, key % num_items]), slot
