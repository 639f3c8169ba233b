"""The interface a recommendation model offers the trainer and the evaluator."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Module, Parameter

from pyg_multirec._checks import is_int
from pyg_multirec.losses import BPRLoss


class Recommender(Module):
    r"""Base class of every model trained by :func:`pyg_multirec.train.train`.

    A model owns its parameters, its graphs and its loss. The trainer only needs
    four things from it:

    * :meth:`embed` returns the final user and item representations used for ranking;
    * :meth:`score` turns a batch of user representations into scores over all items
      (the default is the inner product :math:`\hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i`);
    * :meth:`loss` computes the training objective on a batch of BPR triples and returns
      a dictionary whose ``'loss'`` entry is back-propagated (other entries are logged);
    * :meth:`on_epoch_start` is called before every epoch (e.g. to rebuild a learned graph).

    Parameters returned by :meth:`auxiliary_parameters` are left out of the trainer's
    optimizer (e.g. a mutual-information estimator fitted by its own optimizer).

    Example::

        class MF(Recommender):
            def __init__(self, num_users, num_items, dim=64):
                super().__init__()
                self.user = torch.nn.Embedding(num_users, dim)
                self.item = torch.nn.Embedding(num_items, dim)

            def embed(self):
                return self.user.weight, self.item.weight

            def loss(self, users, pos_items, neg_items):
                u, i = self.embed()
                u = gather_rows(u, users)  # u[users], repeatable on CPU threads
                pos = (u * gather_rows(i, pos_items)).sum(-1)
                neg = (u * gather_rows(i, neg_items)).sum(-1)
                return {'loss': -torch.nn.functional.logsigmoid(pos - neg).mean()}

    (:func:`~pyg_multirec.nn.gather_rows` is ``x[index]`` with a CPU backward that gives the
    same result on every run when torch uses several threads.)
    """

    def embed(self) -> tuple[Tensor, Tensor]:
        """Returns ``(user_emb [num_users, D], item_emb [num_items, D])``."""
        raise NotImplementedError(f"{type(self).__name__} must implement embed()")

    def score(self, user_emb: Tensor, item_emb: Tensor) -> Tensor:
        """Scores ``[B, num_items]`` of a batch of users ``[B, D]`` against all items."""
        return user_emb @ item_emb.t()

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> dict[str, Tensor]:
        """Training objective on a batch of ``(user, positive item, negative item)`` triples.

        Returns a dictionary with the total under ``'loss'``; further entries are logged.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")

    def _add_id_embeddings(
        self,
        num_users: int,
        num_items: int,
        user_dim: int,
        item_dim: int,
        reg_weight: float,
        reg_form: str,
    ) -> None:
        """Adds the ID tables ``user_emb`` :math:`(U, D_u)`, ``item_emb`` :math:`(I, D_i)`
        and the loss ``bpr`` (:class:`~pyg_multirec.losses.BPRLoss`)."""
        self.user_emb = torch.nn.Embedding(num_users, user_dim)
        self.item_emb = torch.nn.Embedding(num_items, item_dim)
        self.bpr = BPRLoss(reg_weight=reg_weight, reg_form=reg_form)

    def _reset_id_embeddings(self) -> None:
        """Re-draws ``user_emb`` and ``item_emb`` (Xavier uniform, as in MMRec)."""
        torch.nn.init.xavier_uniform_(self.user_emb.weight)
        torch.nn.init.xavier_uniform_(self.item_emb.weight)

    @staticmethod
    def _pair_scores(user: Tensor, pos_item: Tensor, neg_item: Tensor) -> tuple[Tensor, Tensor]:
        """Inner-product scores ``(pos [B], neg [B])`` of a batch of BPR triples' vectors."""
        return (user * pos_item).sum(-1), (user * neg_item).sum(-1)

    def on_epoch_start(self, epoch: int) -> None:
        """Hook called by the trainer before each epoch (default: nothing)."""

    def auxiliary_parameters(self) -> list[Parameter]:
        """Parameters that the trainer's optimizer must not update (default: none)."""
        return []

    def main_parameters(self) -> list[Parameter]:
        """The trainable parameters the trainer's optimizer updates: all but
        :meth:`auxiliary_parameters`."""
        aux = {id(p) for p in self.auxiliary_parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in aux]


def check_positive_int(value: int, name: str) -> None:
    """Raises ``ValueError`` naming ``name`` unless ``value`` is an int >= 1 (model sizes)."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int (got {value!r})")
