"""Small graph helpers shared by the layers of :mod:`pyg_multirec.nn`."""

import torch
from torch import Tensor

from pyg_multirec._checks import (
    check_count,
    check_edge_index_shape,
    out_of_range,
    value_checks_enabled,
)


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
