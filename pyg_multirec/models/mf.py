"""Matrix factorisation trained with BPR (Rendle et al., UAI 2009)."""

from __future__ import annotations

from torch import Tensor

from pyg_multirec.models.base import Recommender, check_positive_int


class MF(Recommender):
    r"""Matrix factorisation trained with the Bayesian Personalized Ranking loss, from
    `"BPR: Bayesian Personalized Ranking from Implicit Feedback"
    <https://arxiv.org/abs/1205.2618>`_ (MF-BPR, the first baseline of SEA and MICRO).

    Every user :math:`u` and item :math:`i` has a free embedding; the score is their inner
    product, and a batch of triples :math:`(u, i, j)` (observed item :math:`i`, sampled item
    :math:`j`) is scored by :class:`~pyg_multirec.losses.BPRLoss`:

    .. math::
        \hat{y}_{ui} = \mathbf{e}_u^{\top} \mathbf{e}_i, \qquad
        \mathcal{L} = \frac{1}{B} \sum_{(u, i, j)} -\ln \sigma(\hat{y}_{ui} - \hat{y}_{uj})
        + \lambda \, \Omega(\mathbf{E}_u, \mathbf{E}_i, \mathbf{E}_j),

    where :math:`\Omega` regularises the batch's embeddings:
    :math:`\frac{1}{2B}\sum \|\mathbf{E}\|_F^2` (``reg_form="squared"``) or MMRec's
    :math:`\frac{1}{B}\sum \|\mathbf{E}\|_F` (``reg_form="norm"``). Embeddings are
    Xavier-uniform initialised, as in MMRec.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        dim (int, optional): Embedding size :math:`D`. (default: :obj:`64`)
        reg_weight (float, optional): Regularisation weight :math:`\lambda`.
            (default: :obj:`1e-4`)
        reg_form (str, optional): :obj:`"squared"` or :obj:`"norm"`, see
            :class:`~pyg_multirec.losses.BPRLoss`. (default: :obj:`"squared"`)

    Shapes:
        - **embed():** users :math:`(U, D)`, items :math:`(I, D)`
        - **loss(users, pos_items, neg_items):** three index tensors :math:`(B)`
          :math:`\rightarrow` ``{"loss": scalar}``
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 64,
        reg_weight: float = 1e-4,
        reg_form: str = "squared",
    ) -> None:
        super().__init__()
        for name, value in (("num_users", num_users), ("num_items", num_items), ("dim", dim)):
            check_positive_int(value, name)
        self._add_id_embeddings(num_users, num_items, dim, dim, reg_weight, reg_form)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draws both embedding tables (Xavier uniform)."""
        self._reset_id_embeddings()

    def embed(self) -> tuple[Tensor, Tensor]:
        return self.user_emb.weight, self.item_emb.weight

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> dict[str, Tensor]:
        u, p, n = self.user_emb(users), self.item_emb(pos_items), self.item_emb(neg_items)
        return {"loss": self.bpr(*self._pair_scores(u, p, n), u, p, n)}

    def __repr__(self) -> str:
        num_users, dim = self.user_emb.weight.shape
        return (
            f"{self.__class__.__name__}({num_users}, {self.item_emb.num_embeddings}, "
            f"dim={dim}, reg_weight={self.bpr.reg_weight}, reg_form={self.bpr.reg_form!r})"
        )
