import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module

from pyg_multirec._checks import (
    check_paired,
    check_reduction,
    reduce,
)


class NegativeL2Distance(Module):
    r"""The negative distance loss, the lightweight alternative to the CLUB
    distancing loss from the "It is Never Too Late to Mend: Separate Learning
    for Multimedia Recommendation" (SEA) paper (appendix A.4, inspired by
    SimMMDG): minimising it pushes the unique part :math:`\mathbf{u}_i` of a
    modality away from its generic part :math:`\mathbf{g}_i`,

    .. math::
        \mathcal{L}_{\mathrm{dist}} = -\frac{1}{B} \sum_{i=1}^{B}
        \left\| \frac{\mathbf{u}_i}{\|\mathbf{u}_i\|_2}
        - \frac{\mathbf{g}_i}{\|\mathbf{g}_i\|_2} \right\|_2^2
        = -\frac{1}{B} \sum_{i=1}^{B} \left(2 - 2 \cos(\mathbf{u}_i, \mathbf{g}_i)\right).

    Both inputs are :math:`\ell_2`-normalised first: the raw negative distance
    is unbounded below, so a model could decrease it forever just by inflating
    the norm of either part, and it would swamp the ranking loss. After
    normalisation the loss lies in :math:`[-4, 0]` and only the directions are
    pushed apart (its minimum, :math:`-4`, is reached for opposite vectors).
    Sum it over modalities (or average, as in the paper) in the model.

    Args:
        reduction (str, optional): :obj:`"mean"`, :obj:`"sum"` or
            :obj:`"none"` over the batch. (default: :obj:`"mean"`)

    Shapes:
        - **input:** unique part :math:`(B, F)`, generic part :math:`(B, F)`
        - **output:** scalar, or :math:`(B)` if :obj:`reduction="none"`
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        check_paired(x, y, "x", "y")
        diff = F.normalize(x, dim=-1) - F.normalize(y, dim=-1)
        out = -diff.pow(2).sum(dim=-1)  # SEA eq. 30
        return reduce(out, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
