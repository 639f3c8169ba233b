"""Small graph helpers shared by the layers of :mod:`pyg_multirec.nn`."""

import torch
from torch import Tensor


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
    """
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
        shape = tuple(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index)
        raise ValueError(f"edge_index must have shape [2, num_interactions] (got {shape})")
    if edge_index.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"edge_index must be an integer tensor (got {edge_index.dtype})")
    for name, count in (("num_users", num_users), ("num_items", num_items)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{name} must be a positive int (got {count!r})")
    users, items = edge_index[0].long(), edge_index[1].long()
    if users.numel() > 0:
        for name, ids, count in (("user", users, num_users), ("item", items, num_items)):
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= count:
                raise ValueError(
                    f"{name} ids in edge_index must lie in [0, {count}) "
                    f"(got range [{low}, {high}])"
                )
    items = items + num_users
    return torch.stack([torch.cat([users, items]), torch.cat([items, users])])
