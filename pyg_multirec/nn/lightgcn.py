"""Multi-layer LightGCN propagation with layer combination (LightGCN eq. 4; SEA eq. 6-7)."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.nn import Module
from torch_geometric.typing import Adj, OptTensor

from pyg_multirec._checks import check_choice, check_count
from pyg_multirec.nn.lightgcn_conv import LightGCNConv

COMBINE_MODES = ("mean", "sum", "last")


class LightGCNPropagation(Module):
    r"""Stacks one shared :class:`~pyg_multirec.nn.LightGCNConv` :math:`L` times and
    combines the layer outputs, as in `"LightGCN: Simplifying and Powering Graph
    Convolution Network for Recommendation" <https://arxiv.org/abs/2002.02126>`_ (eq. 4)
    and SEA (eq. 6-7):

    .. math::
        \mathbf{E}^{(l+1)} = \mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}\mathbf{E}^{(l)},
        \qquad
        \mathbf{E} = \frac{1}{L+1} \sum_{l=0}^{L} \mathbf{E}^{(l)} \;\; (\text{``mean''}),

    or :math:`\sum_{l=0}^{L} \mathbf{E}^{(l)}` (``'sum'``) or :math:`\mathbf{E}^{(L)}`
    (``'last'``). For a user-item graph, stack user and item embeddings into one matrix and
    use :func:`~pyg_multirec.nn.utils.bipartite_to_homogeneous` for the edges.

    Args:
        num_layers (int): Number of propagation steps :math:`L \ge 0`.
        combine (str, optional): ``'mean'``, ``'sum'`` or ``'last'``. (default: ``'mean'``)
        cached (bool, optional): Cache the normalised graph on the first call (a fixed graph,
            e.g. the training interactions). Set :obj:`False` for a graph that changes or
            whose edge weights need gradients. (default: :obj:`True`)
        normalize (bool, optional): Symmetrically normalise the graph; :obj:`False` uses
            ``edge_weight`` as given (an already normalised item-item graph).
            (default: :obj:`True`)
        **kwargs (optional): Further arguments of :class:`~pyg_multirec.nn.LightGCNConv`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, edge indices
          :math:`(2, |\mathcal{E}|)`, edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """

    def __init__(
        self,
        num_layers: int,
        combine: str = "mean",
        cached: bool = True,
        normalize: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.num_layers = check_count(num_layers, "num_layers", minimum=0)
        self.combine = check_choice(combine, "combine", COMBINE_MODES)
        self.conv = LightGCNConv(cached=cached, normalize=normalize, **kwargs)

    def reset_parameters(self) -> None:
        """Clears the convolution's cached graph."""
        self.conv.reset_parameters()

    def forward(self, x: Tensor, edge_index: Adj, edge_weight: OptTensor = None) -> Tensor:
        out = x
        total = x
        for _ in range(self.num_layers):
            out = self.conv(out, edge_index, edge_weight)
            total = total + out
        if self.combine == "last":
            return out
        if self.combine == "sum":
            return total
        return total / (self.num_layers + 1)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(num_layers={self.num_layers}, "
            f"combine={self.combine!r}, conv={self.conv})"
        )
