"""Small graph helpers shared by the layers of :mod:`pyg_multirec.nn`."""

import torch
from torch import Tensor

from pyg_multirec._checks import (
    check_count,
    check_edge_index_shape,
    out_of_range,
    value_checks_enabled,
)


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    r"""``x[index]``, the rows of ``x`` picked by the integer ids ``index``, with a backward
    pass that gives the same result on every run.

    On the CPU, the backward of ``x[index]`` (``index_put_`` with ``accumulate=True``) spreads
    the additions over threads with atomic adds once the gradient holds 32,768 values or
    more, so the gradients of a repeated id are summed in an order that changes from run to
    run, and a seeded training run on several threads drifts apart from its repeat. There
    this function selects the rows with :func:`torch.index_select`, whose backward adds them
    in index order (with one thread, that is the order and the result of ``x[index]``'s
    backward). On other devices it indexes as usual: CUDA's indexing backward sorts the ids
    and is deterministic, where ``index_select``'s backward adds atomically.

    Args:
        x (torch.Tensor): Rows to pick from, :math:`(N, *)`.
        index (torch.Tensor): Integer ids in :math:`[0, N)`, of any shape :math:`S`.

    Returns:
        torch.Tensor: :math:`(*S, *)`, equal to ``x[index]``.
    """
    if x.device.type == "cpu":
        return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])
    return x[index]


def bipartite_to_homogeneous(edge_index: Tensor, num_users: int, num_items: int) -> Tensor:
    r"""Turns user-item interactions into the edges of one homogeneous, undirected graph.

    Users keep ids :math:`0, \ldots, U-1`, items are shifted to :math:`U, \ldots, U+I-1`, and
    every interaction :math:`(u, i)` yields the two directed edges :math:`u \to U+i` and
    :math:`U+i \to u` (the LightGCN adjacency
    :math:`\begin{pmatrix} 0 & \mathbf{R} \\ \mathbf{R}^{\top} & 0 \end{pmatrix}`).

    Args:
        edge_index (torch.Tensor): Interactions :math:`(2, |\mathcal{E}|)`, row 0 user ids,
            row 1 item ids.
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.

    Returns:
        torch.Tensor: Edge indices :math:`(2, 2|\mathcal{E}|)` over :math:`U + I` nodes: first
        all user-to-item edges, then all item-to-user edges.

    Ids outside their range raise a :class:`ValueError`, except inside
    :func:`pyg_multirec.value_checks` ``(False)`` (the check reads the ids back to the host).
    """
    check_edge_index_shape(edge_index, "edge_index", "num_interactions")
    for name, count in (("num_users", num_users), ("num_items", num_items)):
        check_count(count, name)
    users, items = edge_index[0].long(), edge_index[1].long()
    if value_checks_enabled():  # reads the ids back to the host (see value_checks)
        for name, ids, count in (("user", users, num_users), ("item", items, num_items)):
            bad = out_of_range(ids, count)
            if bad is not None:
                raise ValueError(
                    f"{name} ids in edge_index must lie in [0, {count}) "
                    f"(got range [{bad[0]}, {bad[1]}])"
                )
    items = items + num_users
    return torch.stack([torch.cat([users, items]), torch.cat([items, users])])


def random_walk_self_loop_weights(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    r"""The row-normalised adjacency with self-loops,
    :math:`\hat{\mathbf{A}} = (\mathbf{D} + \mathbf{I})^{-1} (\mathbf{A} + \mathbf{I})`, as
    edges and weights (the user-item graph of MICRO's official LightGCN backbone).

    :math:`A_{ij}` counts the edges :math:`j \to i` (PyG's ``source_to_target`` flow) and
    :math:`D_{ii} = \sum_j A_{ij}`, so every node averages itself and its neighbours:

    .. math::
        \mathbf{x}^{\prime}_i = \frac{1}{\deg(i) + 1}
        \Big(\mathbf{x}_i + \sum_{j \in \mathcal{N}(i)} \mathbf{x}_j\Big).

    An isolated node (e.g. a cold item) keeps its own vector, where the symmetric
    :math:`\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}` sends it to zero. Pass the result
    to a :class:`~pyg_multirec.nn.LightGCNConv` with ``normalize=False``.

    Args:
        edge_index (torch.Tensor): Edge indices :math:`(2, |\mathcal{E}|)` in
            :math:`[0, |\mathcal{V}|)`, row 0 sources, row 1 targets.
        num_nodes (int): Number of nodes :math:`|\mathcal{V}|`.

    Returns:
        (torch.Tensor, torch.Tensor): the edges followed by one self-loop per node
        :math:`(2, |\mathcal{E}| + |\mathcal{V}|)` and their weights
        :math:`1 / (\deg(i) + 1)` for an edge into node :math:`i`
        :math:`(|\mathcal{E}| + |\mathcal{V}|)`.
    """
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
        shape = tuple(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index)
        raise ValueError(f"edge_index must have shape [2, num_edges] (got {shape})")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"num_nodes must be a positive int (got {num_nodes!r})")
    edge_index = edge_index.long()
    if edge_index.numel() > 0 and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        raise ValueError(f"edge_index entries must lie in [0, {num_nodes})")
    loops = torch.arange(num_nodes, device=edge_index.device)
    edge_index = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
    degree = torch.bincount(edge_index[1], minlength=num_nodes).float()  # deg(i) + 1
    return edge_index, degree.reciprocal()[edge_index[1]]
