from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module
from torch.utils.checkpoint import checkpoint

from pyg_multirec.losses._checks import (
    check_float_tensor,
    check_min_rows,
    check_reduction,
    check_same_shape,
    check_temperature,
    reduce,
)

INFONCE_TEMPERATURE = 0.2  # SEA's temperature, shared by its alignment variants
MICRO_TEMPERATURE = 0.5  # MICRO paper and official code
DEFAULT_BLOCK_SIZE = 1024
HALF = 0.5


class InfoNCELoss(Module):
    r"""The InfoNCE loss of the `"Representation Learning with Contrastive
    Predictive Coding" <https://arxiv.org/abs/1807.03748>`_ paper between two
    views with in-batch negatives and a cosine critic, the alternative
    alignment loss of the "It is Never Too Late to Mend: Separate Learning for
    Multimedia Recommendation" (SEA) paper (variants of Table 4, appendix A.4):

    .. math::
        \ell^{(1 \to 2)}_i = -\log
        \frac{\exp(\cos(\mathbf{x}^{(1)}_i, \mathbf{x}^{(2)}_i) / \tau)}
        {\sum_{j=1}^{B} \exp(\cos(\mathbf{x}^{(1)}_i, \mathbf{x}^{(2)}_j) / \tau)},
        \qquad
        \ell_i = \tfrac{1}{2} \left(\ell^{(1 \to 2)}_i + \ell^{(2 \to 1)}_i\right)

    when :obj:`symmetric=True`, and :math:`\ell_i = \ell^{(1 \to 2)}_i` (which
    equals :class:`SoloSimLoss`) otherwise. The negatives are the other samples
    of the other view. The batch similarity matrix is :math:`(B, B)`: pass a
    batch of rows, not all items.

    Args:
        temperature (float, optional): Temperature :math:`\tau > 0`.
            (default: :obj:`0.2`)
        symmetric (bool, optional): Average both directions.
            (default: :obj:`True`)
        reduction (str, optional): :obj:`"mean"`, :obj:`"sum"` or
            :obj:`"none"` over the batch. (default: :obj:`"mean"`)

    Shapes:
        - **input:** first view :math:`(B, F)`, second view :math:`(B, F)`, :math:`B \geq 2`
        - **output:** scalar, or :math:`(B)` if :obj:`reduction="none"`
    """

    def __init__(
        self,
        temperature: float = INFONCE_TEMPERATURE,
        symmetric: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.symmetric = bool(symmetric)
        self.reduction = check_reduction(reduction)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        check_float_tensor(x1, "x1", dim=2)
        check_float_tensor(x2, "x2", dim=2)
        check_same_shape(x1, x2, "x1", "x2")
        check_min_rows(x1, "x1")
        z1, z2 = F.normalize(x1, dim=-1), F.normalize(x2, dim=-1)
        logits = z1 @ z2.t() / self.temperature
        positive = logits.diagonal()
        out = logits.logsumexp(dim=1) - positive
        if self.symmetric:
            out = HALF * (out + logits.logsumexp(dim=0) - positive)
        return reduce(out, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, symmetric={self.symmetric}, "
            f"reduction={self.reduction!r}"
        )


def _block_loss(anchor: Tensor, positive: Tensor, start: int, end: int, tau: float) -> Tensor:
    r"""Per-row loss of rows ``start:end`` of ``anchor`` (MICRO eq. 11/12 negated):
    inter-view negatives against all of ``positive`` and intra-view negatives
    against all other rows of ``anchor``. Inputs are unit rows; memory
    :math:`O((end - start) \cdot N)`."""
    rows = anchor[start:end]
    inter = rows @ positive.t() / tau  # [b, N]; its diagonal (offset start) holds the positives
    intra = rows @ anchor.t() / tau  # [b, N]
    cols = torch.arange(anchor.size(0), device=anchor.device)
    self_mask = cols.unsqueeze(0) == (cols[start:end]).unsqueeze(1)  # j == i
    intra = intra.masked_fill(self_mask, float("-inf"))
    log_denominator = torch.logaddexp(inter.logsumexp(dim=1), intra.logsumexp(dim=1))
    return log_denominator - inter.diagonal(offset=start)


class MultiModalInfoNCE(Module):
    r"""The multimodal contrastive loss of the `"Latent Structure Mining with
    Contrastive Modality Fusion for Multimedia Recommendation"
    <https://arxiv.org/abs/2111.00678>`_ (MICRO) paper (eq. 10-12), which pulls
    each modality-aware item representation :math:`\mathbf{h}^m_i` towards the
    fused representation :math:`\mathbf{h}_i`:

    .. math::
        \mathcal{L}_C = \frac{1}{|\mathcal{I}|} \sum_{i \in \mathcal{I}}
        \frac{1}{|\mathcal{M}|} \sum_{m \in \mathcal{M}} \frac{1}{2}
        \left( \ell(\mathbf{h}^m_i, \mathbf{h}_i) + \ell(\mathbf{h}_i, \mathbf{h}^m_i) \right),

    .. math::
        \ell(\mathbf{u}_i, \mathbf{v}_i) = -\log
        \frac{e^{\theta(\mathbf{u}_i, \mathbf{v}_i) / \tau}}
        {e^{\theta(\mathbf{u}_i, \mathbf{v}_i) / \tau}
        + \sum_{j \neq i} e^{\theta(\mathbf{u}_i, \mathbf{v}_j) / \tau}
        + \sum_{j \neq i} e^{\theta(\mathbf{u}_i, \mathbf{u}_j) / \tau}},

    with :math:`\theta` the cosine similarity: the negatives of an anchor are
    all other items both in the other view (inter-view) and in its own view
    (intra-view), as in GRACE. :math:`\ell = -I` of the paper's eq. 11-12.

    The similarities are computed :obj:`block_size` anchor rows at a time
    against all :math:`N` columns with :obj:`logsumexp`, so the largest
    intermediate is :math:`(\mathrm{block\_size}, N)`, never :math:`(N, N)`
    (unless :obj:`block_size >= N`). When gradients are needed and there is
    more than one block, each block is checkpointed (recomputed in the
    backward pass), so the memory kept for backward is :math:`O(N F)` rather
    than :math:`O(N^2)`, at the cost of a second forward pass per block.

    Args:
        temperature (float, optional): Temperature :math:`\tau > 0`.
            (default: :obj:`0.5`)
        block_size (int, optional): Number of anchor rows per block.
            (default: :obj:`1024`)
        reduction (str, optional): :obj:`"mean"`, :obj:`"sum"` or
            :obj:`"none"` over the items (the per-item value is the average
            over modalities and both directions). (default: :obj:`"mean"`)

    Shapes:
        - **input:** modality representations: a list of :math:`|\mathcal{M}| \geq 1`
          tensors :math:`(N, F)`, fused representation :math:`(N, F)`, :math:`N \geq 2`
        - **output:** scalar, or :math:`(N)` if :obj:`reduction="none"`
    """

    def __init__(
        self,
        temperature: float = MICRO_TEMPERATURE,
        block_size: int = DEFAULT_BLOCK_SIZE,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"'block_size' must be a positive integer (got {block_size!r})")
        self.temperature = check_temperature(temperature)
        self.block_size = block_size
        self.reduction = check_reduction(reduction)

    def _directional(self, anchor: Tensor, positive: Tensor) -> Tensor:
        num_rows = anchor.size(0)
        blocked = num_rows > self.block_size
        use_checkpoint = (
            blocked and torch.is_grad_enabled() and (anchor.requires_grad or positive.requires_grad)
        )
        out = []
        for start in range(0, num_rows, self.block_size):
            end = min(start + self.block_size, num_rows)
            if use_checkpoint:
                block = checkpoint(
                    _block_loss,
                    anchor,
                    positive,
                    start,
                    end,
                    self.temperature,
                    use_reentrant=False,
                )
            else:
                block = _block_loss(anchor, positive, start, end, self.temperature)
            out.append(block)
        return torch.cat(out) if blocked else out[0]

    def forward(self, modal: Sequence[Tensor], fused: Tensor) -> Tensor:
        if isinstance(modal, Tensor) or not isinstance(modal, (list, tuple)):
            raise TypeError(f"'modal' must be a list of tensors (got {type(modal).__name__})")
        if len(modal) == 0:
            raise ValueError("'modal' must contain at least one modality (got an empty list)")
        check_float_tensor(fused, "fused", dim=2)
        check_min_rows(fused, "fused")
        for m, h_m in enumerate(modal):
            check_float_tensor(h_m, f"modal[{m}]", dim=2)
            check_same_shape(h_m, fused, f"modal[{m}]", "fused")

        z = F.normalize(fused, dim=-1)
        out = fused.new_zeros(fused.size(0))
        for h_m in modal:  # MICRO eq. 10
            z_m = F.normalize(h_m, dim=-1)
            # MICRO eq. 11 (anchor h^m, positive h) and eq. 12 (anchor h, positive h^m)
            out = out + HALF * (self._directional(z_m, z) + self._directional(z, z_m))
        out = out / len(modal)
        return reduce(out, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, block_size={self.block_size}, "
            f"reduction={self.reduction!r}"
        )
