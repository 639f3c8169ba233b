from torch import Tensor
from torch.nn import Module

from pyg_multirec._checks import check_reduction, check_temperature, reduce
from pyg_multirec.losses.infonce import _paired_cosine_logits

DEFAULT_TEMPERATURE = 0.2  # SEA's official model config


class SoloSimLoss(Module):
    r"""The SoloSim alignment loss from the "It is Never Too Late to Mend:
    Separate Learning for Multimedia Recommendation" (SEA) paper (eq. 16),
    which aligns the generic parts of two modalities by maximising a lower
    bound of their mutual information.

    Both views are :math:`\ell_2`-normalised, and each sample of the first view
    is classified against all samples of the second view in the batch:

    .. math::
        \mathcal{L}_{\mathrm{SoloSim}} = -\frac{1}{B} \sum_{i=1}^{B} \log
        \frac{\exp(\mathbf{z}^{(1)}_i \cdot \mathbf{z}^{(2)}_i / \tau)}
        {\sum_{j=1}^{B} \exp(\mathbf{z}^{(1)}_i \cdot \mathbf{z}^{(2)}_j / \tau)},
        \qquad \mathbf{z}^{(v)}_i = \mathbf{x}^{(v)}_i / \|\mathbf{x}^{(v)}_i\|_2 .

    The loss is one-directional (softmax over the second view only), as in the
    paper; it is not symmetric in its arguments. Its negatives are the other
    samples of the *other* view only. :class:`InfoNCELoss` with
    :obj:`symmetric=False` computes the same quantity; with
    :obj:`symmetric=True` it averages both directions. The batch similarity
    matrix is :math:`(B, B)`: pass a batch of rows, not all items.

    Args:
        temperature (float, optional): Temperature :math:`\tau > 0`.
            (default: :obj:`0.2`)
        reduction (str, optional): :obj:`"mean"`, :obj:`"sum"` or
            :obj:`"none"` over the batch. (default: :obj:`"mean"`)

    Shapes:
        - **input:** first view :math:`(B, F)`, second view :math:`(B, F)`, :math:`B \geq 2`
        - **output:** scalar, or :math:`(B)` if :obj:`reduction="none"`
    """

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, reduction: str = "mean") -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.reduction = check_reduction(reduction)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        logits = _paired_cosine_logits(x1, x2, self.temperature)
        out = logits.logsumexp(dim=-1) - logits.diagonal()  # SEA eq. 16
        return reduce(out, self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"
