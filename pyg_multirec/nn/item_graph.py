"""Weighted sum of per-modality item-item graphs (SEA eq. 11)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor
from torch.nn import Module, Parameter
from torch_geometric.utils import coalesce

from pyg_multirec._checks import check_int


class MultiModalItemGraph(Module):
    r"""The multimodal item-item graph of "It is Never Too Late to Mend: Separate Learning
    for Multimedia Recommendation" (SEA; He et al., 2024, eq. 11): a weighted sum of
    the normalised per-modality kNN graphs (e.g. from
    :func:`~pyg_multirec.nn.knn_item_graph`),

    .. math::
        \mathbf{S} = \sum_{m \in \mathcal{M}} \alpha_m \tilde{\mathbf{S}}^m, \qquad
        \alpha_m = \frac{\exp(\theta_m)}{\sum_{m'} \exp(\theta_{m'})},

    with learnable logits :math:`\theta` (``learnable=True``), or fixed weights
    :math:`\alpha` used as given (``learnable=False``; the official SEA code fixes
    image 0.1, text 0.9). The result is one coalesced graph over the union of the edges;
    its weights are differentiable w.r.t. :math:`\theta` and the input edge weights.

    Args:
        num_modalities (int): Number of graphs :math:`|\mathcal{M}|` to combine.
        learnable (bool, optional): Learn the mixing weights. (default: :obj:`True`)
        init_weights (Sequence[float], optional): Positive initial weights (learnable: the
            softmax starts at their normalised values) or the fixed weights
            (not learnable). :obj:`None` means uniform :math:`1/|\mathcal{M}|`.
            (default: :obj:`None`)

    Shapes:
        - **input:** a list of :math:`|\mathcal{M}|` pairs ``(edge_index`` :math:`(2,
          |\mathcal{E}_m|)`, ``edge_weight`` :math:`(|\mathcal{E}_m|))` over the same
          :math:`N` items
        - **output:** ``edge_index`` :math:`(2, |\mathcal{E}|)`, ``edge_weight``
          :math:`(|\mathcal{E}|)`
    """

    def __init__(
        self,
        num_modalities: int,
        learnable: bool = True,
        init_weights: Optional[Sequence[float]] = None,
    ) -> None:
        super().__init__()
        num_modalities = check_int(num_modalities, "num_modalities", minimum=1)
        if init_weights is None:
            init = torch.full((num_modalities,), 1.0 / num_modalities)
        else:
            init = torch.as_tensor(init_weights, dtype=torch.float).flatten()
            if init.numel() != num_modalities:
                raise ValueError(
                    f"init_weights must have {num_modalities} entries (got {init.numel()})"
                )
            if not bool(torch.isfinite(init).all()) or bool((init <= 0).any()):
                raise ValueError(f"init_weights must be finite and positive (got {init.tolist()})")
        self.num_modalities = num_modalities
        self.learnable = learnable
        self.register_buffer("init_weights", init.clone())
        if learnable:
            self.logits = Parameter(torch.empty(num_modalities))
        else:
            self.register_parameter("logits", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.logits is not None:
            with torch.no_grad():
                # softmax(log w) = w / sum(w)
                self.logits.copy_(self.init_weights.log())

    @property
    def weights(self) -> Tensor:
        r"""The current modality weights :math:`\alpha` of shape :math:`(|\mathcal{M}|)`."""
        if self.logits is not None:
            return torch.softmax(self.logits, dim=0)
        return self.init_weights

    def forward(
        self,
        graphs: Sequence[tuple[Tensor, Tensor]],
        num_nodes: Optional[int] = None,
    ) -> tuple[Tensor, Tensor]:
        if not isinstance(graphs, (list, tuple)) or len(graphs) != self.num_modalities:
            count = len(graphs) if isinstance(graphs, (list, tuple)) else type(graphs).__name__
            raise ValueError(
                f"graphs must be a list of {self.num_modalities} (edge_index, edge_weight) "
                f"pairs (got {count})"
            )
        for m, (edge_index, edge_weight) in enumerate(graphs):
            if edge_index.dim() != 2 or edge_index.size(0) != 2:
                raise ValueError(
                    f"graphs[{m}] edge_index must have shape [2, E] "
                    f"(got {tuple(edge_index.shape)})"
                )
            if edge_weight.shape != (edge_index.size(1),):
                raise ValueError(
                    f"graphs[{m}] edge_weight must have shape [{edge_index.size(1)}] "
                    f"(got {tuple(edge_weight.shape)})"
                )
        alpha = self.weights.to(graphs[0][1].dtype)
        edge_index = torch.cat([edge_index for edge_index, _ in graphs], dim=1)
        edge_weight = torch.cat(  # eq. 11
            [alpha[m] * edge_weight for m, (_, edge_weight) in enumerate(graphs)]
        )
        return coalesce(edge_index, edge_weight, num_nodes=num_nodes, reduce="sum")

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.num_modalities}, learnable={self.learnable})"
        )
