"""Attention fusion of per-modality item representations (MICRO eq. 7-9)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
from torch import Tensor
from torch.nn import Linear, Module

from pyg_multirec._checks import check_count


class AttentionFusion(Module):
    r"""Attentive multimodal fusion from `"Latent Structure Mining with Contrastive Modality
    Fusion for Multimedia Recommendation" <https://arxiv.org/abs/2111.00678>`_
    (MICRO, eq. 7-9):

    .. math::
        w_i^m = \mathbf{q}^{\top} \tanh(\mathbf{W} \mathbf{h}_i^m + \mathbf{b}), \qquad
        \alpha_i^m = \frac{\exp(w_i^m)}{\sum_{m'} \exp(w_i^{m'})}, \qquad
        \mathbf{h}_i = \sum_m \alpha_i^m \mathbf{h}_i^m,

    with :math:`\mathbf{W}, \mathbf{b}, \mathbf{q}` shared by all modalities and the softmax
    taken over modalities for each item.

    Args:
        in_channels (int): Representation size :math:`D`.
        hidden_channels (int): Size of the attention space (rows of :math:`\mathbf{W}`;
            MICRO uses :math:`D`).

    Shapes:
        - **input:** a list of :math:`M \ge 1` tensors :math:`(N, D)` or one tensor
          :math:`(M, N, D)`
        - **output:** fused :math:`(N, D)` and attention weights :math:`(N, M)`
    """

    def __init__(self, in_channels: int, hidden_channels: int) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels)):
            check_count(value, name)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.lin = Linear(in_channels, hidden_channels)  # W, b
        self.query = Linear(hidden_channels, 1, bias=False)  # q
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()
        self.query.reset_parameters()

    def forward(self, xs: Union[Sequence[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        h = self._stack(xs)  # [M, N, D]
        score = self.query(torch.tanh(self.lin(h))).squeeze(-1)  # eq. 7: [M, N]
        alpha = torch.softmax(score, dim=0)  # eq. 8
        fused = (alpha.unsqueeze(-1) * h).sum(dim=0)  # eq. 9
        return fused, alpha.t()

    def _stack(self, xs: Union[Sequence[Tensor], Tensor]) -> Tensor:
        if isinstance(xs, Tensor):
            if xs.dim() != 3:
                raise ValueError(f"xs must be a [M, N, D] tensor (got {tuple(xs.shape)})")
            h = xs
        else:
            if not isinstance(xs, (list, tuple)) or len(xs) == 0:
                raise ValueError("xs must be a non-empty list of [N, D] tensors")
            shapes = {tuple(x.shape) for x in xs}
            if len(shapes) != 1 or len(next(iter(shapes))) != 2:
                raise ValueError(
                    f"xs must hold [N, D] tensors of one shape (got {sorted(shapes)})"
                )
            h = torch.stack(list(xs))
        if h.size(0) == 0:
            raise ValueError("xs must hold at least one modality (got M = 0)")
        if h.size(-1) != self.in_channels:
            raise ValueError(
                f"xs must have in_channels={self.in_channels} features (got {h.size(-1)})"
            )
        return h

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.hidden_channels})"
