import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module

from pyg_multirec._checks import check_float_tensor, check_reduction, reduce

# The squared L2 term is ``reg_weight * ||e||^2 / 2`` per sample (LightGCN / MICRO convention).
L2_HALF = 0.5
#: The forms of the embedding regulariser (see :class:`BPRLoss`).
REG_FORMS = ("squared", "norm")


class BPRLoss(Module):
    r"""The Bayesian Personalized Ranking loss from the `"BPR: Bayesian
    Personalized Ranking from Implicit Feedback" <https://arxiv.org/abs/1205.2618>`_
    paper, as used by SEA (eq. 18) and MICRO (eq. 15), with optional L2
    regularisation of the batch embeddings.

    For a batch of :math:`B` triplets :math:`(u, i, j)` (user, observed item,
    unobserved item), the per-sample loss is

    .. math::
        \ell_b = -\ln \sigma(\hat{y}_{ui} - \hat{y}_{uj})
        + \frac{\lambda}{2} \sum_{\mathbf{E}} \|\mathbf{e}_b\|_2^2,

    where the sum runs over the embedding tensors passed to :meth:`forward`
    (e.g. the user, positive-item and negative-item embeddings of the batch)
    and :math:`\lambda` is :obj:`reg_weight`. With :obj:`reduction="mean"` the
    result is

    .. math::
        \frac{1}{B} \sum_b -\ln \sigma(\hat{y}_{ui} - \hat{y}_{uj})
        + \frac{\lambda}{2B} \sum_{\mathbf{E}} \|\mathbf{E}\|_F^2,

    the convention of LightGCN and of MICRO's official code (sum of squared
    norms / 2 / batch size); this is :obj:`reg_form="squared"`.

    With :obj:`reg_form="norm"` the regulariser is the one of MMRec's
    ``EmbLoss`` (used by its BPR, LightGCN and VBPR): the sum of the
    *non-squared* Frobenius norms of the batch's embedding matrices, divided by
    the batch size,

    .. math::
        \frac{1}{B} \sum_b -\ln \sigma(\hat{y}_{ui} - \hat{y}_{uj})
        + \frac{\lambda}{B} \sum_{\mathbf{E}} \|\mathbf{E}\|_F .

    This term belongs to the batch, not to a sample: with
    :obj:`reduction="none"` or :obj:`"sum"` it is spread evenly over the
    :math:`B` samples (each gets :math:`\frac{\lambda}{B} \sum_{\mathbf{E}}
    \|\mathbf{E}\|_F`), so that the mean is the formula above. It does not split over
    the slices of a data-parallel batch (each process takes the norm of its own slice; see
    ``docs/distributed.md``). The two forms
    are on different scales: MMRec's grids (e.g. :math:`\lambda \in
    \{2, 1, 10^{-1}, \dots\}` for BPR) are meant for :obj:`"norm"`.

    :math:`-\ln \sigma(x)` is evaluated as :obj:`-F.logsigmoid(x)`, which is
    stable for large :math:`|x|`. The papers use the natural logarithm; SEA's
    official code uses :math:`-\log_2 \sigma(x)`, which is the same loss scaled by
    :math:`1 / \ln 2` and is available through :obj:`log_base=2`
    (only the ranking term is rescaled, not the L2 term).

    With :math:`K` negatives per positive (:obj:`neg_scores` of shape
    :math:`(B, K)`), the :math:`K` ranking terms of a row are averaged, so that
    the per-sample loss stays one value per triplet row.

    Args:
        reg_weight (float, optional): L2 regularisation weight :math:`\lambda`
            (default: :obj:`0.0`)
        reduction (str, optional): :obj:`"mean"`, :obj:`"sum"` or
            :obj:`"none"` over the batch. (default: :obj:`"mean"`)
        log_base (float, optional): base of the logarithm of the ranking term;
            :obj:`None` for the natural logarithm. (default: :obj:`None`)
        reg_form (str, optional): :obj:`"squared"` (half the squared L2 norm of
            each sample's embeddings) or :obj:`"norm"` (MMRec's non-squared
            Frobenius norm of each batch matrix divided by the batch size).
            (default: :obj:`"squared"`)

    Shapes:
        - **input:**
          positive scores :math:`(B)`,
          negative scores :math:`(B)` or :math:`(B, K)`,
          embeddings :math:`(B, *)` each *(optional)*
        - **output:** scalar, or :math:`(B)` if :obj:`reduction="none"`
    """

    def __init__(
        self,
        reg_weight: float = 0.0,
        reduction: str = "mean",
        log_base: Optional[float] = None,
        reg_form: str = "squared",
    ) -> None:
        super().__init__()
        if not math.isfinite(reg_weight) or reg_weight < 0:
            raise ValueError(f"'reg_weight' must be a finite number >= 0 (got {reg_weight})")
        if log_base is not None and (not math.isfinite(log_base) or log_base <= 0 or log_base == 1):
            raise ValueError(f"'log_base' must be > 0 and != 1 (got {log_base})")
        if reg_form not in REG_FORMS:
            raise ValueError(f"'reg_form' must be one of {REG_FORMS} (got {reg_form!r})")
        self.reg_weight = float(reg_weight)
        self.reg_form = reg_form
        self.reduction = check_reduction(reduction)
        self.log_base = log_base

    def forward(self, pos_scores: Tensor, neg_scores: Tensor, *embeddings: Tensor) -> Tensor:
        check_float_tensor(pos_scores, "pos_scores", dim=1)
        check_float_tensor(neg_scores, "neg_scores")
        batch_size = pos_scores.size(0)
        if neg_scores.dim() not in (1, 2) or neg_scores.size(0) != batch_size:
            raise ValueError(
                f"'neg_scores' must have shape ({batch_size},) or ({batch_size}, K) to match "
                f"'pos_scores' of shape {tuple(pos_scores.shape)} "
                f"(got {tuple(neg_scores.shape)})"
            )
        for k, emb in enumerate(embeddings):
            check_float_tensor(emb, f"embeddings[{k}]")
            if emb.dim() == 0 or emb.size(0) != batch_size:
                raise ValueError(
                    f"'embeddings[{k}]' must have {batch_size} rows, one per sample "
                    f"(got shape {tuple(emb.shape)})"
                )

        if neg_scores.dim() == 2:
            pos_scores = pos_scores.unsqueeze(-1)
        out = -F.logsigmoid(pos_scores - neg_scores)  # SEA eq. 18, MICRO eq. 15
        if out.dim() == 2:
            out = out.mean(dim=-1)
        if self.log_base is not None:
            out = out / math.log(self.log_base)

        if self.reg_weight > 0 and len(embeddings) > 0:
            if self.reg_form == "squared":
                sq_norm = sum(emb.reshape(batch_size, -1).pow(2).sum(dim=-1) for emb in embeddings)
                out = out + self.reg_weight * L2_HALF * sq_norm
            else:  # MMRec's EmbLoss: one Frobenius norm per matrix, spread over the batch
                norms = sum(torch.linalg.vector_norm(emb) for emb in embeddings)
                out = out + self.reg_weight * norms / batch_size

        return reduce(out, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"reg_weight={self.reg_weight}, reg_form={self.reg_form!r}, "
            f"reduction={self.reduction!r}, log_base={self.log_base}"
        )
