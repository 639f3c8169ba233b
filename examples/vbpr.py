"""VBPR (He & McAuley, AAAI 2016) as in MMRec, optionally with SEA's alignment and distancing
modules plugged in (``--sea``, the plug-and-play experiment of SEA's Table 3).

    python examples/vbpr.py                            # generated data, no files needed
    python examples/vbpr.py --dataset ml100k           # MovieLens-100K
    python examples/vbpr.py --dataset ml100k --sea     # VBPR + SEA
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from itertools import combinations
from typing import Optional

import torch
from torch import Tensor
from torch.nn import Linear, Module, ModuleList, Parameter
from torch_geometric.data import HeteroData

from pyg_multirec.experiment import run_example
from pyg_multirec.losses import BPRLoss, FittedCLUB, SoloSimLoss
from pyg_multirec.losses.bpr import REG_FORMS
from pyg_multirec.models import Recommender

REG_WEIGHT = 1e-4  # MMRec grid-searches it (1e-5 ... 2.0); the MF example's value
SEA_ALIGN_WEIGHT = 0.012  # alpha of SEA eq. 19 (official CLI default)
SEA_DISTANCE_WEIGHT = 0.006  # beta of SEA eq. 19 (official code)
SEA_TEMPERATURE = 0.2  # tau of SoloSim (official model config)
SEA_CLUB_STEPS = 50  # inner Adam steps of the CLUB estimator per batch (official code)
# SEA's CLUBSample(hidden_size=16) uses hidden_size // 2 units in its mean/variance MLPs.
SEA_CLUB_HIDDEN = 8
CLUB_LR = 1e-3  # the official code fits CLUB at the model's learning rate; build() passes --lr


class SeparateLearning(Module):
    r"""SEA's alignment and distancing modules, from "It is Never Too Late to Mend: Separate
    Learning for Multimedia Recommendation" (He et al., 2024), as a content encoder that any
    content-aware model can plug in.

    Each modality's features :math:`\mathbf{x}^m_i` are projected,
    :math:`\mathbf{z}^m_i = \mathbf{W}_m \mathbf{x}^m_i + \mathbf{b}_m`, and split into a
    generic half :math:`\mathbf{g}^m_i` (first :math:`\lfloor D/2 \rfloor` entries) and a
    unique half :math:`\mathbf{u}^m_i`. The generic halves of every pair of modalities
    :math:`a < b` are aligned by SoloSim (eq. 16); inside each modality the generic and unique
    halves are pushed apart by minimising a CLUB upper bound of their mutual information
    (eq. 14-15):

    .. math::
        \mathcal{L}_{align} = \operatorname{mean}_{a<b}\,
        \mathrm{SoloSim}(\mathbf{g}^a, \mathbf{g}^b), \qquad
        \mathcal{L}_{dist} = \operatorname{mean}_{m}\, \hat{I}_{CLUB}(\mathbf{g}^m; \mathbf{u}^m),

    added to the host's loss as :math:`\alpha \mathcal{L}_{align} + \beta \mathcal{L}_{dist}`
    (eq. 19). One CLUB estimator serves all modalities (as in the official code); it is fitted
    in :meth:`losses`, before the bound is taken, by ``club_steps`` steps of its own Adam on
    the detached halves of the batch. Its parameters must stay out of the host's optimizer
    (:attr:`auxiliary_parameters`); its optimizer state is saved through
    ``get_extra_state``. The losses are computed on the rows passed in (the batch's items);
    SoloSim acts on the generic halves directly (the official code adds BatchNorm projection
    heads).

    Args:
        feature_dims: raw feature size :math:`d_m` of every modality (at least two).
        dim: projection size :math:`D` per modality (at least 2).
        align_weight: :math:`\alpha`.
        distance_weight: :math:`\beta`.
        temperature: SoloSim temperature :math:`\tau`.
        club_steps: inner steps of the CLUB estimator per call of :meth:`losses` in training.
        club_lr: learning rate of the CLUB estimator's Adam.

    Shapes:
        - **forward:** features :math:`(B, \sum_m d_m)` -> list of :math:`(B, D)`
    """

    def __init__(
        self,
        feature_dims: Sequence[int],
        dim: int,
        align_weight: float = SEA_ALIGN_WEIGHT,
        distance_weight: float = SEA_DISTANCE_WEIGHT,
        temperature: float = SEA_TEMPERATURE,
        club_steps: int = SEA_CLUB_STEPS,
        club_lr: float = CLUB_LR,
    ):
        super().__init__()
        if len(feature_dims) < 2:
            raise ValueError(
                f"SEA aligns modalities in pairs: it needs at least two (got {len(feature_dims)})"
            )
        if dim < 2:
            raise ValueError(f"dim must be >= 2 to split into generic and unique (got {dim})")
        if club_steps < 1:
            raise ValueError(f"club_steps must be >= 1 (got {club_steps})")
        self.feature_dims = list(feature_dims)
        self.num_generic = dim // 2
        self.align_weight = float(align_weight)
        self.distance_weight = float(distance_weight)
        self.club_steps = club_steps
        self.projections = ModuleList(Linear(d, dim) for d in feature_dims)
        self.solosim = SoloSimLoss(temperature)
        # The estimator with its own Adam (SEA eq. 15's alternation), state in checkpoints.
        self.club = FittedCLUB(
            self.num_generic, dim - self.num_generic, SEA_CLUB_HIDDEN, club_steps, club_lr
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in self.projections:
            _xavier_linear(lin)
        self.club.reset_parameters()

    def auxiliary_parameters(self) -> list[Parameter]:
        """The CLUB estimator's parameters, fitted by its own optimizer."""
        return list(self.club.parameters())

    def forward(self, x: Tensor) -> list[Tensor]:
        return [lin(x_m) for lin, x_m in zip(self.projections, x.split(self.feature_dims, 1))]

    def losses(self, projections: list[Tensor]) -> dict[str, Tensor]:
        generic = [z[:, : self.num_generic] for z in projections]
        unique = [z[:, self.num_generic :] for z in projections]
        align = torch.stack(  # SEA eq. 16
            [self.solosim(generic[a], generic[b]) for a, b in combinations(range(len(generic)), 2)]
        ).mean()
        if self.training and torch.is_grad_enabled():  # fit q(u | g) first, then the bound
            self.club.fit(torch.cat(generic), torch.cat(unique))
        distance = torch.stack([self.club(g, u) for g, u in zip(generic, unique)]).mean()
        return {"align": align, "distance": distance}


class VBPR(Recommender):
    r"""VBPR from `"VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback"
    <https://arxiv.org/abs/1510.01784>`_ (He & McAuley, AAAI 2016), in MMRec's form: the
    item is its ID embedding next to a linear map of its concatenated modality features, the
    user an embedding of the same width, scored by the inner product and trained with BPR:

    .. math::
        \mathbf{e}_i = [\,\boldsymbol{\gamma}_i \,;\, \mathbf{E}\mathbf{f}_i + \mathbf{c}\,],
        \qquad \mathbf{e}_u = [\,\boldsymbol{\gamma}_u \,;\, \boldsymbol{\theta}_u\,],
        \qquad \hat{y}_{ui} = \mathbf{e}_u^{\top}\mathbf{e}_i .

    With ``sea`` (a :class:`SeparateLearning`), the content part is the concatenation of its
    per-modality projections (:math:`|\mathcal{M}| D` wide) and its alignment and distancing
    terms join the loss (SEA eq. 19). The L2 term acts on the batch's full user and item
    vectors (MMRec), squared.

    Args:
        num_users, num_items: node counts.
        features: one ``[num_items, d_m]`` float tensor per modality.
        dim: ID embedding size, and content size without ``sea``.
        reg_weight: L2 weight.
        sea: optional SEA modules.
        reg_form: ``'squared'`` or ``'norm'`` (MMRec's EmbLoss), see :class:`BPRLoss`.

    Shapes:
        - **embed():** users :math:`(U, D + C)`, items :math:`(N, D + C)`
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        features: Sequence[Tensor],
        dim: int = 64,
        reg_weight: float = REG_WEIGHT,
        sea: Optional[SeparateLearning] = None,
        reg_form: str = "squared",
    ):
        super().__init__()
        if isinstance(features, Tensor) or not isinstance(features, (list, tuple)) or not features:
            raise ValueError("features must be a non-empty list of [num_items, d_m] tensors")
        for m, x in enumerate(features):
            if not isinstance(x, Tensor) or x.dim() != 2 or x.size(0) != num_items:
                raise ValueError(f"features[{m}] must be a [num_items={num_items}, d_m] tensor")
        feature_dims = [x.size(1) for x in features]
        if sea is not None and sea.feature_dims != feature_dims:
            raise ValueError(
                f"sea expects features of widths {sea.feature_dims}, got {feature_dims}"
            )
        # Raw features are rebuilt from the data, so they are not saved in checkpoints.
        self.register_buffer("features", torch.cat(features, 1).detach().float(), persistent=False)
        self.sea = sea
        if sea is None:
            self.content = Linear(sum(feature_dims), dim)
            content_dim = dim
        else:
            self.content = None
            content_dim = sum(lin.out_features for lin in sea.projections)
        self.user_emb = torch.nn.Embedding(num_users, dim + content_dim)
        self.item_emb = torch.nn.Embedding(num_items, dim)
        self.bpr = BPRLoss(reg_weight=reg_weight, reg_form=reg_form)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.user_emb.weight)
        torch.nn.init.xavier_uniform_(self.item_emb.weight)
        if self.content is not None:
            _xavier_linear(self.content)
        if self.sea is not None:
            self.sea.reset_parameters()

    def auxiliary_parameters(self) -> list[Parameter]:
        return [] if self.sea is None else self.sea.auxiliary_parameters()

    def _items(self, items: Optional[Tensor] = None) -> tuple[Tensor, Optional[list[Tensor]]]:
        """Item vectors (all, or the rows ``items``) and SEA's projections of them."""
        x = self.features if items is None else self.features[items]
        ids = self.item_emb.weight if items is None else self.item_emb(items)
        if self.sea is None:
            return torch.cat([ids, self.content(x)], -1), None
        projections = self.sea(x)
        return torch.cat([ids, *projections], -1), projections

    def embed(self) -> tuple[Tensor, Tensor]:
        return self.user_emb.weight, self._items()[0]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> dict[str, Tensor]:
        items, inverse = torch.cat([pos_items, neg_items]).unique(return_inverse=True)
        item_vectors, projections = self._items(items)
        pos_e, neg_e = item_vectors[inverse].split(pos_items.numel())
        u = self.user_emb(users)
        bpr = self.bpr((u * pos_e).sum(-1), (u * neg_e).sum(-1), u, pos_e, neg_e)
        if self.sea is None:
            return {"loss": bpr, "bpr": bpr}
        terms = self.sea.losses(projections)  # on the batch's distinct items
        loss = bpr + self.sea.align_weight * terms["align"]  # SEA eq. 19
        loss = loss + self.sea.distance_weight * terms["distance"]
        return {"loss": loss, "bpr": bpr, **terms}


def _xavier_linear(lin: Linear) -> None:
    torch.nn.init.xavier_normal_(lin.weight)  # MMRec's initialisation of linear layers
    torch.nn.init.zeros_(lin.bias)


def build(data: HeteroData, args: argparse.Namespace) -> VBPR:
    features = [data["item"][f"{m}_feat"] for m in data.modalities]
    sea = None
    if args.sea:
        sea = SeparateLearning(
            [x.size(1) for x in features],
            args.dim,
            align_weight=args.align_weight,
            distance_weight=args.distance_weight,
            temperature=args.sea_temperature,
            club_steps=args.club_steps,
            club_lr=args.lr,
        )
    return VBPR(
        data["user"].num_nodes,
        data["item"].num_nodes,
        features,
        dim=args.dim,
        reg_weight=args.reg_weight,
        sea=sea,
        reg_form=args.reg_form,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reg-weight", type=float, default=REG_WEIGHT, help="L2 weight")
    parser.add_argument(
        "--reg-form", choices=REG_FORMS, default="squared", help="L2 form (MMRec grids: norm)"
    )
    parser.add_argument("--sea", action="store_true", help="add SEA's alignment and distancing")
    parser.add_argument(
        "--align-weight", type=float, default=SEA_ALIGN_WEIGHT, help="SEA alpha (SoloSim)"
    )
    parser.add_argument(
        "--distance-weight", type=float, default=SEA_DISTANCE_WEIGHT, help="SEA beta (CLUB)"
    )
    parser.add_argument("--sea-temperature", type=float, default=SEA_TEMPERATURE)
    parser.add_argument(
        "--club-steps", type=int, default=SEA_CLUB_STEPS, help="CLUB fitting steps per batch"
    )


#: tune's default space: MMRec's VBPR grid, whose weights are on EmbLoss's (norm) scale.
SEARCH_SPACE = {"reg_weight": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5], "reg_form": ["norm"]}

if __name__ == "__main__":
    run_example("vbpr", build, add_arguments, search_space=SEARCH_SPACE)
