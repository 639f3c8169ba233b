"""LightGCN on the user-item training graph, trained with BPR (He et al., SIGIR 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from pyg_multirec.models.base import Recommender, check_positive_int
from pyg_multirec.nn import (
    LightGCNPropagation,
    bipartite_to_homogeneous,
    gather_rows,
    random_walk_self_loop_weights,
)

#: ``'sym'``: LightGCN's :math:`\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}`;
#: ``'rw-self-loop'``: :math:`(\mathbf{D}+\mathbf{I})^{-1}(\mathbf{A}+\mathbf{I})` (MICRO's code).
NORMALIZATIONS = ("sym", "rw-self-loop")
#: Buffers that checkpoints written before they became non-persistent still hold.
LEGACY_GRAPH_KEYS = ("graph", "graph_weight")


class LightGCN(Recommender):
    r"""The LightGCN model from `"LightGCN: Simplifying and Powering Graph Convolution
    Network for Recommendation" <https://arxiv.org/abs/2002.02126>`_, trained with BPR
    (the second baseline of SEA and MICRO, and MICRO's default backbone).

    User and item embeddings :math:`\mathbf{E}^{(0)}` (users first) are propagated
    :math:`L` times over the normalised user-item training graph
    :math:`\mathbf{A} = \begin{pmatrix} 0 & \mathbf{R} \\ \mathbf{R}^{\top} & 0
    \end{pmatrix}` by a :class:`~pyg_multirec.nn.LightGCNPropagation`, and the layers are
    averaged (LightGCN eq. 3-4, SEA eq. 6-7; :math:`L = 0` is MF):

    .. math::
        \mathbf{E}^{(l+1)} = \hat{\mathbf{A}} \mathbf{E}^{(l)}, \qquad
        \mathbf{E} = \frac{1}{L+1} \sum_{l=0}^{L} \mathbf{E}^{(l)}, \qquad
        \hat{y}_{ui} = \mathbf{e}_u^{\top} \mathbf{e}_i ,

    with :math:`\hat{\mathbf{A}} = \mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}`
    (``normalization="sym"``, LightGCN) or the row-normalised graph with self-loops
    :math:`\hat{\mathbf{A}} = (\mathbf{D} + \mathbf{I})^{-1} (\mathbf{A} + \mathbf{I})`
    (``"rw-self-loop"``, the backbone of MICRO's official code,
    :func:`~pyg_multirec.nn.random_walk_self_loop_weights`), where a node without
    interactions (a cold item) keeps its whole embedding instead of
    :math:`\frac{1}{L+1}` of it.

    The loss is :class:`~pyg_multirec.losses.BPRLoss` on the scores :math:`\hat{y}`, with
    the regulariser on the batch's layer-0 (ego) embeddings, as in LightGCN:

    .. math::
        \mathcal{L} = \frac{1}{B} \sum_{(u, i, j)} -\ln \sigma(\hat{y}_{ui} - \hat{y}_{uj})
        + \lambda \, \Omega(\mathbf{E}^{(0)}_u, \mathbf{E}^{(0)}_i, \mathbf{E}^{(0)}_j),

    :math:`\Omega = \frac{1}{2B}\sum \|\cdot\|_F^2` (``reg_form="squared"``) or
    :math:`\frac{1}{B}\sum \|\cdot\|_F` (``reg_form="norm"``, MMRec).
    The normalised graph is computed once and cached.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        train_edge_index (torch.Tensor): Training interactions :math:`(2, |\mathcal{E}|)`,
            row 0 user ids in :math:`[0, U)`, row 1 item ids in :math:`[0, I)`.
        dim (int, optional): Embedding size :math:`D`. (default: :obj:`64`)
        num_layers (int, optional): Propagation layers :math:`L \ge 0`. (default: :obj:`2`)
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
        train_edge_index: Tensor,
        dim: int = 64,
        num_layers: int = 2,
        reg_weight: float = 1e-4,
        reg_form: str = "squared",
        normalization: str = "sym",
    ) -> None:
        super().__init__()
        check_positive_int(dim, "dim")
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS} (got {normalization!r})"
            )
        self.num_users, self.num_items = num_users, num_items
        self.normalization = normalization
        # checks the shape, dtype and id ranges of train_edge_index and the two counts
        graph = bipartite_to_homogeneous(train_edge_index, num_users, num_items)
        weight = None
        if normalization == "rw-self-loop":
            graph, weight = random_walk_self_loop_weights(graph, num_users + num_items)
        # Derived from the training pairs, which build the model again: not saved (they were
        # two thirds of a MICRO checkpoint on ml100k, and the early stopper kept a copy).
        self.register_buffer("graph", graph, persistent=False)
        self.register_buffer("graph_weight", weight, persistent=False)
        self._add_id_embeddings(num_users, num_items, dim, dim, reg_weight, reg_form)
        self.propagation = LightGCNPropagation(
            num_layers, combine="mean", normalize=normalization == "sym"
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draws both embedding tables (Xavier uniform) and clears the cached graph."""
        self._reset_id_embeddings()
        self.propagation.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints written before the graph became non-persistent still hold it.
        for name in LEGACY_GRAPH_KEYS:
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def embed(self) -> tuple[Tensor, Tensor]:
        x = torch.cat([self.user_emb.weight, self.item_emb.weight])
        out = self.propagation(x, self.graph, self.graph_weight)
        return out[: self.num_users], out[self.num_users :]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> dict[str, Tensor]:
        user_out, item_out = self.embed()
        pos, neg = self._pair_scores(
            gather_rows(user_out, users),
            gather_rows(item_out, pos_items),
            gather_rows(item_out, neg_items),
        )
        ego = (self.user_emb(users), self.item_emb(pos_items), self.item_emb(neg_items))
        return {"loss": self.bpr(pos, neg, *ego)}

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.num_users}, {self.num_items}, "
            f"dim={self.user_emb.embedding_dim}, num_layers={self.propagation.num_layers}, "
            f"reg_weight={self.bpr.reg_weight}, reg_form={self.bpr.reg_form!r}, "
            f"normalization={self.normalization!r})"
        )
