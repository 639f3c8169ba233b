"""kNN item-item graphs from modality features (MICRO eq. 1-3, SEA eq. 8-10)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch_geometric.utils import coalesce

from pyg_multirec._checks import check_count, check_int, check_tensor, value_checks_enabled
from pyg_multirec.nn.utils import gather_rows

if TYPE_CHECKING:
    from pyg_multirec.ann import Backend

DEFAULT_BLOCK_SIZE = 1024
# Lower bound on feature norms (as in F.normalize): an all-zero feature row gets cosine 0 to
# every item (including itself) instead of NaN.
COSINE_EPS = 1e-12
FINITE_CHECK_ROWS = 1024


def _check_features(x: Tensor, name: str = "x") -> None:
    check_tensor(x, name)
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [num_items, num_features] (got {tuple(x.shape)})")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (got {x.dtype})")
    # A finite sum proves every entry finite (NaN and +-inf propagate) in one cheap pass with
    # no temporary; only when it is not (a real NaN/inf, or a float overflow of the sum) are
    # the entries scanned, in row chunks so that the temporary mask stays small. Reading the
    # result back is a host sync: skipped while value checks are off.
    if not value_checks_enabled() or bool(torch.isfinite(x.detach().sum())):
        return
    if not all(bool(torch.isfinite(chunk).all()) for chunk in x.detach().split(FINITE_CHECK_ROWS)):
        raise ValueError(f"{name} contains NaN or infinite values")


def _check_k(k: int, num_items: int, self_loops: bool) -> None:
    check_int(k, "k")
    if k < 1:
        raise ValueError(f"k ({k}) must be >= 1")
    if self_loops and k > num_items:
        raise ValueError(f"k ({k}) must be <= number of items ({num_items})")
    if not self_loops and k > num_items - 1:
        raise ValueError(
            f"k ({k}) must be <= number of items - 1 ({num_items - 1}) when self_loops=False"
        )


def _check_block_size(block_size: int) -> None:
    check_count(block_size, "block_size")


@torch.no_grad()
def _blockwise_topk(
    x: Tensor, k: int, block_size: int, self_loops: bool
) -> tuple[Tensor, Tensor]:
    """Top-k cosine similarities per row, ``block_size`` rows of the N x N matrix at a time."""
    # cosine = (x_i . x_j) / (|x_i| |x_j|), scaling each block instead of copying x
    # normalised. The row factor 1 / |x_i| > 0 does not change a row's ranking, so it is
    # applied to the k kept values only: one pass over each block instead of two.
    inv_norm = x.norm(dim=-1).clamp_min(COSINE_EPS).reciprocal()
    num_items = x.size(0)
    values = x.new_empty(num_items, k)
    index = torch.empty(num_items, k, dtype=torch.long, device=x.device)
    for start in range(0, num_items, block_size):
        stop = min(start + block_size, num_items)
        sim = x[start:stop] @ x.t()  # eq. 1 for one block of rows, up to the row factor
        sim.mul_(inv_norm[None, :])
        if not self_loops:
            rows = torch.arange(stop - start, device=x.device)
            sim[rows, rows + start] = -math.inf
        values[start:stop], index[start:stop] = sim.topk(k, dim=-1)  # eq. 2
    values.mul_(inv_norm[:, None])
    return values, index


def _topk(
    x: Tensor, k: int, block_size: int, self_loops: bool, backend: Backend
) -> tuple[Tensor, Tensor]:
    """Checks the arguments, then exact blockwise top-k of ``x`` (detached), or the FAISS
    selection with exact cosines (``backend``)."""
    _check_features(x)
    _check_k(k, x.size(0), self_loops)
    _check_block_size(block_size)
    x = x.detach()
    from pyg_multirec.ann import approximate_topk_cosine, resolve_backend

    ann = resolve_backend(backend)
    if ann is None:
        return _blockwise_topk(x, k, block_size, self_loops)
    return approximate_topk_cosine(x, k, block_size, self_loops, ann)


def topk_cosine_neighbors(
    x: Tensor,
    k: int,
    block_size: int = DEFAULT_BLOCK_SIZE,
    self_loops: bool = True,
    backend: Backend = "exact",
) -> Tensor:
    r"""Indices of the :math:`k` most cosine-similar rows of :obj:`x` for every row
    (MICRO eq. 1-2), computed without gradient, ``block_size`` rows at a time so that the
    extra memory stays :math:`O(N k + \text{block} \cdot N)`; the :math:`N \times N`
    similarity matrix is never built.

    Args:
        x (torch.Tensor): Features :math:`(N, F)`.
        k (int): Neighbours per row, :math:`1 \le k \le N` (:math:`N-1` without self-loops).
        block_size (int, optional): Rows of the similarity matrix held at once.
            (default: :obj:`1024`)
        self_loops (bool, optional): If :obj:`True`, an item may be its own neighbour (it
            is its own nearest one, cosine 1, as in the LATTICE/MICRO code).
            (default: :obj:`True`)
        backend (str or FaissANN, optional): ``'exact'`` (blockwise, :math:`O(N^2 F)`) or
            ``'faiss'`` / a :class:`~pyg_multirec.ann.FaissANN` (approximate neighbours from
            a FAISS inner-product index over the normalised rows, for large :math:`N`; the
            cosines of the selected pairs are exact). Needs ``pip install faiss-cpu``.
            (default: :obj:`'exact'`)

    Returns:
        torch.Tensor: Long tensor :math:`(N, k)`; row :math:`i` lists its neighbours,
        most similar first.
    """
    return _topk(x, k, block_size, self_loops, backend)[1]


def normalize_knn_weights(weight: Tensor, neighbors: Tensor) -> Tensor:
    r"""Symmetric normalisation :math:`\mathbf{D}^{-1/2}\hat{\mathbf{S}}\mathbf{D}^{-1/2}`
    (MICRO eq. 3) of a kNN graph given row-wise as ``weight[i, t] =`` :math:`\hat{S}_{i,j}`
    for ``j = neighbors[i, t]``, with :math:`D_{ii} = \sum_j \hat{S}_{ij}` (rows with zero
    sum get zero weights). Differentiable w.r.t. ``weight``.

    Args:
        weight (torch.Tensor): Kept similarities :math:`(N, k)`, non-negative.
        neighbors (torch.Tensor): Neighbour indices :math:`(N, k)`.

    Returns:
        torch.Tensor: Normalised weights :math:`(N, k)`, laid out like ``weight``.
    """
    degree = weight.sum(dim=-1)
    positive = degree > 0
    safe = torch.where(positive, degree, torch.ones_like(degree))
    deg_inv_sqrt = torch.where(positive, safe.rsqrt(), torch.zeros_like(degree))
    return deg_inv_sqrt.unsqueeze(-1) * weight * gather_rows(deg_inv_sqrt, neighbors)


def _knn_pairs(neighbors: Tensor) -> tuple[Tensor, Tensor]:
    """Sources ``neighbors[i, t]`` and targets ``i`` of the kNN pairs, row-major."""
    num_items, k = neighbors.shape
    target = torch.arange(num_items, device=neighbors.device).repeat_interleave(k)
    return neighbors.reshape(-1), target


def knn_edges(
    weight: Tensor, neighbors: Tensor, drop_zeros: bool = True
) -> tuple[Tensor, Tensor]:
    r"""Turns a row-wise kNN matrix (``weight[i, t]`` for the pair ``(i, neighbors[i, t])``)
    into coalesced PyG edges ``j -> i`` (``edge_index = [[j, ...], [i, ...]]``), so that sum
    aggregation at target :math:`i` computes :math:`(\mathbf{S}\mathbf{X})_i`.
    Zero weights are dropped when ``drop_zeros`` (their edge carries nothing)."""
    source, target = _knn_pairs(neighbors)
    edge_weight = weight.reshape(-1)
    if drop_zeros:
        keep = edge_weight != 0
        target, source, edge_weight = target[keep], source[keep], edge_weight[keep]
    edge_index = torch.stack([source, target])
    return coalesce(edge_index, edge_weight, num_nodes=neighbors.size(0), reduce="sum")


def knn_item_graph(
    x: Tensor,
    k: int,
    block_size: int = DEFAULT_BLOCK_SIZE,
    suppress_negative: bool = True,
    weighted: bool = True,
    normalize: bool = True,
    self_loops: bool = True,
    backend: Backend = "exact",
) -> tuple[Tensor, Tensor]:
    r"""The normalised kNN item-item graph of one modality, from `"Latent Structure Mining
    with Contrastive Modality Fusion for Multimedia Recommendation"
    <https://arxiv.org/abs/2111.00678>`_ (MICRO eq. 1-3; SEA eq. 8-10):

    .. math::
        S_{ij} = \frac{\mathbf{e}_i^{\top}\mathbf{e}_j}{\|\mathbf{e}_i\|\|\mathbf{e}_j\|},
        \qquad
        \hat{S}_{ij} = \begin{cases} \max(S_{ij}, 0), & S_{ij} \in \text{top-}k(S_{i,:})\\
        0, & \text{otherwise} \end{cases},
        \qquad
        \tilde{\mathbf{S}} = \mathbf{D}^{-1/2}\hat{\mathbf{S}}\mathbf{D}^{-1/2},
        \; D_{ii} = \sum_j \hat{S}_{ij}.

    The top-:math:`k` is taken ``block_size`` rows at a time (memory
    :math:`O(N k + \text{block} \cdot N)`; the dense :math:`N \times N` matrix is never
    built). The result carries no gradient (see
    :class:`~pyg_multirec.nn.KNNStructureLayer` for a differentiable graph).

    Edge convention: the neighbours :math:`j` of row :math:`i` give edges :math:`j \to i`,
    i.e. ``edge_index = [[j, ...], [i, ...]]`` with weight :math:`\tilde{S}_{ij}`, so PyG
    sum aggregation at target :math:`i` (e.g. :class:`~pyg_multirec.nn.LightGCNConv` with
    ``normalize=False``) computes :math:`(\tilde{\mathbf{S}}\mathbf{X})_i`. Each item is its
    own nearest neighbour (cosine 1), so it keeps a self-loop unless ``self_loops=False``,
    as in the LATTICE/MICRO code. Entries that are zero after suppression are dropped, so a
    row may have fewer than :math:`k` edges.

    Args:
        x (torch.Tensor): Modality features :math:`(N, F)`.
        k (int): Neighbours kept per item.
        block_size (int, optional): Rows of the similarity matrix held at once.
            (default: :obj:`1024`)
        suppress_negative (bool, optional): Set negative similarities to zero (eq. 2 text).
            (default: :obj:`True`)
        weighted (bool, optional): If :obj:`False`, kept entries are 1 instead of their
            similarity before normalisation (as in the FREEDOM/SEA code). With
            ``suppress_negative`` only positive similarities count as kept.
            (default: :obj:`True`)
        normalize (bool, optional): Apply eq. 3. (default: :obj:`True`)
        self_loops (bool, optional): Allow an item among its own neighbours.
            (default: :obj:`True`)
        backend (str or FaissANN, optional): ``'exact'`` (blockwise, :math:`O(N^2 F)`) or
            ``'faiss'`` / a :class:`~pyg_multirec.ann.FaissANN` (approximate neighbours from
            a FAISS inner-product index over the normalised rows, for large :math:`N`; the
            cosines of the selected pairs are exact). Needs ``pip install faiss-cpu``.
            (default: :obj:`'exact'`)

    Returns:
        (torch.Tensor, torch.Tensor): Coalesced ``edge_index`` :math:`(2, |\mathcal{E}|)`
        and ``edge_weight`` :math:`(|\mathcal{E}|)` with :math:`|\mathcal{E}| \le N k`.
    """
    similarity, neighbors = _topk(x, k, block_size, self_loops, backend)
    weight = similarity if weighted else torch.ones_like(similarity)
    if suppress_negative:
        weight = torch.where(similarity > 0, weight, torch.zeros_like(weight))
    if normalize:
        weight = normalize_knn_weights(weight, neighbors)
    return knn_edges(weight, neighbors)
