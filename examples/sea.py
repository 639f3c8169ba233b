r"""SEA: "It is Never Too Late to Mend: Separate Learning for Multimedia Recommendation"
(He et al., 2024), assembled from the layers and losses of :mod:`pyg_multirec`.

Each modality's item features are projected to ``dim`` and propagated with free user
embeddings over the user-item graph (LightGCN, eq. 6-7); the fused item representations are
refined on a frozen kNN item-item graph (eq. 8-12). Each modal item representation is split
into a *generic* and a *unique* half (section 4.2.1): the unique half is pushed away from the
generic half of the same modality by minimising a CLUB upper bound of their mutual information
(eq. 14-15), and the generic halves of different modalities are aligned by SoloSim (eq. 16).

    python examples/sea.py                                  # generated data, no files needed
    python examples/sea.py --dataset ml100k                 # SEA_a: SoloSim + CLUB (default)
    python examples/sea.py --dataset ml100k --variant d     # Table 4: InfoNCE + negative L2
    python examples/sea.py --dataset ml100k --align none    # Fig. 3: w/o alignment
    python examples/sea.py --dataset ml100k --align none --distance none   # Fig. 3: w/o all

Where the paper is silent, the settings follow the official code (github.com/bruno686/SEA):
dim 64, lr 1e-4, 2 user-item layers, 1 item-item layer, kNN k = 10 on the raw features (graph
frozen, unweighted entries), batch 2048, no L2 regularisation (the code reads ``reg_weight``
but never uses it), projection heads on the generic halves, CLUB on 32-d linear maps of the
halves, one estimator shared by all modalities and fitted by its own Adam (same learning rate
as the model) for 50 steps per training batch.

Cost of the CLUB inner loop: ``--club-steps`` forward/backward passes of two small MLPs
(``32 -> 8 -> 32``) on the ``M * B_items x 32`` detached samples per training batch, with
``B_items`` the distinct items of the batch (about 1,200 on ml100k). At 50 steps it takes
about two thirds of a training step on ml100k (CPU; the propagations, the alignment and the
CLUB estimate share the rest); ``--club-steps 1`` or ``--distance l2`` (the paper's cheap
alternative, appendix A.4) remove most of it, as in the paper's Table 5 (SEA_a vs SEA_b).

Deviations from the official code (each is a flag or documented here): the auxiliary losses
use the distinct items of the batch instead of all items (the official SoloSim builds an
``N x N`` similarity matrix); the CLUB estimate follows the paper's eq. 15 (no second halving,
no clamping at zero); BPR uses the natural logarithm of eq. 18 (``--bpr-log2`` for the code's
``log2``); the item-graph weights of eq. 11 are learnable as in the paper, starting from the
code's fixed values (``--item-graph-weights fixed`` keeps image 0.1 / text 0.9, or equal
weights for other modality sets); the per-user modality
weights of the code's fusion are left out (they only re-scale free user embeddings); the
item input is one Linear projection per modality (the code uses a wider projection followed
by a two-layer MLP).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Mapping
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import (
    BatchNorm1d,
    Embedding,
    Linear,
    Module,
    ModuleList,
    Parameter,
    ReLU,
    Sequential,
)
from torch_geometric.data import HeteroData

from pyg_multirec.experiment import run_example
from pyg_multirec.losses import (
    BPRLoss,
    FittedCLUB,
    InfoNCELoss,
    NegativeL2Distance,
    SoloSimLoss,
)
from pyg_multirec.models import Recommender
from pyg_multirec.nn import (
    LightGCNConv,
    LightGCNPropagation,
    MultiModalItemGraph,
    bipartite_to_homogeneous,
    knn_item_graph,
)

# ---- defaults: the paper's where it gives them, else the official code's -------------------
DIM = 64  # embedding size (MMRec, official config)
LR = 1e-4  # paper and official code
USER_ITEM_LAYERS = 2  # the official GCN applies two convolutions
ITEM_LAYERS = 1  # official n_mm_layers
KNN_K = 10  # official knn_k
ALPHA = 0.012  # weight of the alignment loss (official CLI default)
BETA = 0.006  # weight of the distancing loss (official 'ureg')
TAU = 0.2  # SoloSim temperature (official model config; overrides the CLI's 0.046)
PROJ_HIDDEN = 64  # projection head of the alignment loss (official hidden_dim)
PROJ_DIM = 32  # (official out_dim)
CLUB_DIM = 32  # linear maps of the generic/unique halves fed to CLUB (official 32)
# The official CLUBSample(hidden_size=16) uses hidden_size // 2 = 8 hidden units.
CLUB_HIDDEN = 8
CLUB_STEPS = 50  # inner Adam steps of the estimator per training batch (official trainer)
REG_WEIGHT = 0.0  # the official loss has no L2 term
# Official fixed weights of the item-item graphs (eq. 11); other modality sets get equal weights.
OFFICIAL_GRAPH_WEIGHTS = {"image": 0.1, "text": 0.9}
MIN_MODALITIES = 2
NUM_HALVES = 2  # generic and unique

ALIGN_CHOICES = ("solosim", "infonce", "none")
DISTANCE_CHOICES = ("club", "l2", "none")
GRAPH_WEIGHT_CHOICES = ("learnable", "fixed")
# Table 4 of the paper lost its check marks in extraction. Our reading of the text: "SoloSim
# and MIM achieve the best results" (SEA_a = SoloSim + CLUB); "SEA_a performs slightly better
# than SEA_c ... pseudo-negative samples" (SEA_c = InfoNCE + CLUB); SEA_d is the worst (InfoNCE
# + negative L2), leaving SEA_b = SoloSim + negative L2. Table 5's costs agree: a and c (CLUB,
# "a large increase in resource consumption") share 3.42 GB and 16-19 s/epoch on Baby, b and d
# 2.54 GB and 4-5 s; within each pair the InfoNCE variant (c, d) is the slower one.
VARIANTS = {
    "a": ("solosim", "club"),
    "b": ("solosim", "l2"),
    "c": ("infonce", "club"),
    "d": ("infonce", "l2"),
}


class ProjectionHead(Module):
    r"""The projection head that SEA's official code puts in front of the alignment loss:
    :math:`\mathrm{Linear} \to \mathrm{BN} \to \mathrm{ReLU} \to \mathrm{Linear} \to
    \mathrm{BN} \to \mathrm{ReLU} \to \mathrm{Linear}` (as in SimCLR-style heads).

    Args:
        in_channels (int): Size of each input sample (a generic half).
        hidden_channels (int): Width of the two hidden layers.
        out_channels (int): Size of each output sample.

    Shapes:
        - **input:** :math:`(B, F_{in})`, :math:`B \ge 2` in training (batch norm)
        - **output:** :math:`(B, F_{out})`
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int) -> None:
        super().__init__()
        self.mlp = Sequential(
            Linear(in_channels, hidden_channels),
            BatchNorm1d(hidden_channels),
            ReLU(),
            Linear(hidden_channels, hidden_channels),
            BatchNorm1d(hidden_channels),
            ReLU(),
            Linear(hidden_channels, out_channels),
        )

    def reset_parameters(self) -> None:
        for module in self.mlp:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


def resolve_components(
    variant: Optional[str], align: Optional[str], distance: Optional[str]
) -> tuple[str, str]:
    """The ``(align, distance)`` losses named by ``--variant`` or by ``--align/--distance``."""
    if variant is None:
        return align or VARIANTS["a"][0], distance or VARIANTS["a"][1]
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)} (got {variant!r})")
    chosen = VARIANTS[variant]
    if align not in (None, chosen[0]) or distance not in (None, chosen[1]):
        raise ValueError(
            f"variant {variant!r} means align={chosen[0]!r}, distance={chosen[1]!r}; "
            f"it conflicts with align={align!r}, distance={distance!r}"
        )
    return chosen


def default_graph_weights(modalities: list[str]) -> list[float]:
    """The official fixed item-graph weights (image 0.1, text 0.9), else equal weights."""
    if sorted(modalities) == sorted(OFFICIAL_GRAPH_WEIGHTS):
        return [OFFICIAL_GRAPH_WEIGHTS[m] for m in modalities]
    return [1.0 / len(modalities)] * len(modalities)


class SEA(Recommender):
    r"""SEA (He et al., 2024): separate learning of modal-generic and modal-unique item
    representations.

    **Representation (section 4.1).** For each modality :math:`m`, item inputs
    :math:`\mathbf{x}^m_i = \mathbf{W}_m \mathbf{f}^m_i + \mathbf{b}_m` (features
    :math:`\mathbf{f}^m_i`) and free user embeddings :math:`\mathbf{e}^m_u`, scaled to unit
    norm (:math:`\mathbf{E}^{m,(0)}`, as in the official code), are propagated on the
    normalised user-item graph and the layers are averaged (eq. 6-7),

    .. math::
        \mathbf{E}^{m,(l+1)} = \mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}\mathbf{E}^{m,(l)},
        \qquad \bar{\mathbf{E}}^m = \frac{1}{L+1}\sum_{l=0}^{L}\mathbf{E}^{m,(l)} .

    The propagation is linear and shared, so all modalities are propagated at once on the
    concatenation :math:`[\mathbf{E}^{1} \| \cdots \| \mathbf{E}^{M}]`. The item-item graph
    :math:`\mathbf{S} = \sum_m \alpha_m \tilde{\mathbf{S}}^m` (eq. 11) combines frozen,
    normalised kNN graphs of the raw features (eq. 8-10) and propagates the fused items
    :math:`\mathbf{h}^{(0)} = [\bar{\mathbf{E}}^1_i \| \cdots \| \bar{\mathbf{E}}^M_i]`,
    :math:`\mathbf{h}^{(l+1)} = \mathbf{S}\mathbf{h}^{(l)}` (eq. 12). Fusion (eq. 17, as in
    the official code): :math:`\mathbf{z}_u = [\bar{\mathbf{e}}^1_u \| \cdots \|
    \bar{\mathbf{e}}^M_u]`, :math:`\mathbf{z}_i = \mathbf{h}^{(0)}_i + \mathbf{h}^{(L_S)}_i`,
    scored by :math:`\hat{y}_{ui} = \mathbf{z}_u^{\top}\mathbf{z}_i`.

    **Separate learning (section 4.2).** Each :math:`\mathbf{x}^m_i` is split into a generic
    half :math:`\mathbf{g}^m_i` and a unique half :math:`\mathbf{u}^m_i`. On the distinct
    items :math:`\mathcal{B}` of a training batch,

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}} + \alpha\,
        \underbrace{\binom{M}{2}^{-1} \sum_{m < n} \mathcal{L}_{\mathrm{SoloSim}}
        (P_m \mathbf{g}^m_{\mathcal{B}}, P_n \mathbf{g}^n_{\mathcal{B}})}_{\text{align, eq. 16}}
        + \beta\, \underbrace{\frac{1}{M} \sum_m \hat{I}_{\mathrm{CLUB}}
        (G_m \mathbf{g}^m_{\mathcal{B}}, U_m \mathbf{u}^m_{\mathcal{B}})}_{\text{distance,
        eq. 15}}

    (eq. 19), with projection heads :math:`P_m` and linear maps :math:`G_m, U_m` as in the
    official code. The CLUB estimator is fitted by its own Adam on detached samples before
    each estimate. ``align='infonce'`` and ``distance='l2'`` swap in the alternatives of
    Table 4 (:class:`~pyg_multirec.losses.InfoNCELoss`,
    :class:`~pyg_multirec.losses.NegativeL2Distance`, appendix A.4); ``'none'`` drops a term
    (Fig. 3 ablations) together with its modules.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        train_edge_index (torch.Tensor): Training interactions :math:`(2, E)`, row 0 users.
        features (Mapping[str, torch.Tensor]): Item features :math:`(I, d_m)` per modality,
            at least two modalities.
        dim (int): Size :math:`D` of each modal representation (even: two halves).
        num_layers (int): User-item propagation layers :math:`L`.
        item_layers (int): Item-item propagation layers :math:`L_S`.
        knn_k (int): Neighbours per item of the kNN graphs.
        item_graph_weights (str): ``'learnable'`` (paper) or ``'fixed'`` (official code)
            weights :math:`\alpha_m` of eq. 11.
        graph_init_weights (list[float], optional): Initial (learnable) or fixed
            :math:`\alpha_m`; default :func:`default_graph_weights`.
        align (str): ``'solosim'``, ``'infonce'`` or ``'none'``.
        distance (str): ``'club'``, ``'l2'`` or ``'none'``.
        alpha (float): Weight of the alignment loss.
        beta (float): Weight of the distancing loss.
        tau (float): Temperature of the alignment loss.
        proj_hidden, proj_dim (int): Widths of the alignment projection heads.
        club_dim (int): Width of the linear maps fed to the distancing loss.
        club_hidden (int): Hidden width of the CLUB estimator.
        club_steps (int): Inner Adam steps of the estimator per training batch.
        club_lr (float): Learning rate of the estimator's Adam.
        reg_weight (float): L2 weight of the batch's layer-0 embeddings in BPR.
        bpr_log_base (float, optional): :obj:`2` for the official code's :math:`\log_2`.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        features: Mapping[str, Tensor],
        *,
        dim: int = DIM,
        num_layers: int = USER_ITEM_LAYERS,
        item_layers: int = ITEM_LAYERS,
        knn_k: int = KNN_K,
        item_graph_weights: str = "learnable",
        graph_init_weights: Optional[list[float]] = None,
        align: str = "solosim",
        distance: str = "club",
        alpha: float = ALPHA,
        beta: float = BETA,
        tau: float = TAU,
        proj_hidden: int = PROJ_HIDDEN,
        proj_dim: int = PROJ_DIM,
        club_dim: int = CLUB_DIM,
        club_hidden: int = CLUB_HIDDEN,
        club_steps: int = CLUB_STEPS,
        club_lr: float = LR,
        reg_weight: float = REG_WEIGHT,
        bpr_log_base: Optional[float] = None,
    ) -> None:
        super().__init__()
        if not isinstance(features, Mapping) or len(features) < MIN_MODALITIES:
            names = list(features) if isinstance(features, Mapping) else type(features).__name__
            raise ValueError(
                f"SEA needs at least {MIN_MODALITIES} modalities to align and separate "
                f"(got features for {names})"
            )
        for m, feat in features.items():
            if not isinstance(feat, Tensor) or feat.dim() != 2 or feat.size(0) != num_items:
                shape = tuple(feat.shape) if isinstance(feat, Tensor) else type(feat).__name__
                raise ValueError(
                    f"features[{m!r}] must have shape [num_items={num_items}, d] (got {shape})"
                )
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % NUM_HALVES:
            raise ValueError(f"dim must be an even int >= 2 (two halves; got {dim!r})")
        for name, value, choices in (
            ("align", align, ALIGN_CHOICES),
            ("distance", distance, DISTANCE_CHOICES),
            ("item_graph_weights", item_graph_weights, GRAPH_WEIGHT_CHOICES),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices} (got {value!r})")
        for name, value in (("alpha", alpha), ("beta", beta), ("reg_weight", reg_weight)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0 (got {value!r})")
        if isinstance(item_layers, bool) or not isinstance(item_layers, int) or item_layers < 0:
            raise ValueError(f"item_layers must be a non-negative int (got {item_layers!r})")

        self.modalities = list(features)
        self.num_users, self.num_items = num_users, num_items
        self.dim, self.half = dim, dim // NUM_HALVES
        self.align, self.distance = align, distance
        self.alpha, self.beta = alpha, beta
        self.item_layers = item_layers
        num_modalities = len(self.modalities)

        # Constants, computed once. Raw features stay out of checkpoints (persistent=False).
        for index, feat in enumerate(features.values()):
            self.register_buffer(f"feat_{index}", feat.float(), persistent=False)
        graph = bipartite_to_homogeneous(train_edge_index, num_users, num_items)
        self.register_buffer("user_item_graph", graph, persistent=False)
        # eq. 8-10: frozen kNN graph of each modality's raw features (unweighted, as the code)
        for index, feat in enumerate(features.values()):
            edge_index, edge_weight = knn_item_graph(feat.float(), knn_k, weighted=False)
            self.register_buffer(f"knn_index_{index}", edge_index, persistent=False)
            self.register_buffer(f"knn_weight_{index}", edge_weight, persistent=False)
        if graph_init_weights is None:
            graph_init_weights = default_graph_weights(self.modalities)
        self.item_graph = MultiModalItemGraph(
            num_modalities,
            learnable=item_graph_weights == "learnable",
            init_weights=graph_init_weights,
        )
        if item_graph_weights == "fixed":  # eq. 11 with constant weights: combine once
            edge_index, edge_weight = self.item_graph(self._knn_graphs(), num_items)
            self.register_buffer("fixed_item_index", edge_index, persistent=False)
            self.register_buffer("fixed_item_weight", edge_weight, persistent=False)
            self.item_convs = ModuleList([LightGCNConv(cached=True, normalize=False)])
        else:  # one cached convolution per modality graph (see propagate_items)
            self.item_convs = ModuleList(
                LightGCNConv(cached=True, normalize=False) for _ in self.modalities
            )

        # Parameters.
        self.user_emb = ModuleList(Embedding(num_users, dim) for _ in self.modalities)
        self.item_proj = ModuleList(Linear(f.size(1), dim) for f in features.values())
        self.user_item = LightGCNPropagation(num_layers, combine="mean", cached=True)  # eq. 6-7
        self.bpr = BPRLoss(reg_weight=reg_weight, log_base=bpr_log_base)  # eq. 18

        self.align_heads: Optional[ModuleList] = None
        self.align_loss: Optional[Module] = None
        if align != "none":
            self.align_heads = ModuleList(
                ProjectionHead(self.half, proj_hidden, proj_dim) for _ in self.modalities
            )
            self.align_loss = SoloSimLoss(tau) if align == "solosim" else InfoNCELoss(tau)

        self.generic_maps: Optional[ModuleList] = None
        self.unique_maps: Optional[ModuleList] = None
        self.club: Optional[FittedCLUB] = None
        self.l2_distance: Optional[NegativeL2Distance] = None
        if distance != "none":
            self.generic_maps = ModuleList(Linear(self.half, club_dim) for _ in self.modalities)
            self.unique_maps = ModuleList(Linear(self.half, club_dim) for _ in self.modalities)
            if distance == "club":
                self.club = FittedCLUB(club_dim, club_dim, club_hidden, club_steps, club_lr)
            else:
                self.l2_distance = NegativeL2Distance()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for emb in self.user_emb:
            torch.nn.init.xavier_uniform_(emb.weight)  # free user embeddings (MMRec: Xavier)
        for module in self.children():  # ModuleLists have no reset_parameters()
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for modules in (self.item_proj, self.align_heads, self.generic_maps, self.unique_maps):
            for module in modules or ():
                module.reset_parameters()

    def auxiliary_parameters(self) -> list[Parameter]:
        """The CLUB estimator's parameters: fitted by its own Adam, not the trainer's."""
        return list(self.club.parameters()) if self.club is not None else []

    # ------------------------------------------------------------------------------------
    def _features(self) -> list[Tensor]:
        return [getattr(self, f"feat_{m}") for m in range(len(self.modalities))]

    def _knn_graphs(self) -> list[tuple[Tensor, Tensor]]:
        return [
            (getattr(self, f"knn_index_{m}"), getattr(self, f"knn_weight_{m}"))
            for m in range(len(self.modalities))
        ]

    def propagate_items(self, h: Tensor) -> Tensor:
        r""":math:`\mathbf{h}^{(L_S)} = \mathbf{S}^{L_S} \mathbf{h}^{(0)}` on the item-item
        graph :math:`\mathbf{S} = \sum_m \alpha_m \tilde{\mathbf{S}}^m` (eq. 11-12).

        With learnable :math:`\alpha`, :math:`\mathbf{S}\mathbf{h} = \sum_m \alpha_m
        (\tilde{\mathbf{S}}^m \mathbf{h})` is computed on the frozen per-modality graphs:
        the same result as propagating on the combined graph, but the gradient of
        :math:`\alpha_m` is one inner product per modality instead of one per edge, and no
        graph is rebuilt per call."""
        if not self.item_graph.learnable:
            conv = self.item_convs[0]
            for _ in range(self.item_layers):
                h = conv(h, self.fixed_item_index, self.fixed_item_weight)  # eq. 12
            return h
        alpha = self.item_graph.weights.to(h.dtype)  # eq. 11
        graphs = self._knn_graphs()
        for _ in range(self.item_layers):
            h = sum(  # eq. 12
                alpha[m] * conv(h, edge_index, edge_weight)
                for m, (conv, (edge_index, edge_weight)) in enumerate(zip(self.item_convs, graphs))
            )
        return h

    def item_inputs(self) -> list[Tensor]:
        r"""The modal item representations :math:`\mathbf{x}^m = \mathbf{W}_m \mathbf{F}^m +
        \mathbf{b}_m`, one :math:`(I, D)` tensor per modality; columns ``[:D/2]`` are the
        generic half, ``[D/2:]`` the unique half (section 4.2.1)."""
        return [proj(feat) for proj, feat in zip(self.item_proj, self._features())]

    def propagate(self, item_inputs: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Final user :math:`(U, MD)` and item :math:`(I, MD)` representations (eq. 6-17)."""
        # Layer 0: unit-norm rows per modality, as the official code (F.normalize before its
        # GCN); with lr 1e-4 this lets training leave the popularity plateau much sooner.
        users = torch.cat([F.normalize(emb.weight, dim=-1) for emb in self.user_emb], dim=1)
        items = torch.cat([F.normalize(x, dim=-1) for x in item_inputs], dim=1)
        x = torch.cat([users, items], dim=0)
        out = self.user_item(x, self.user_item_graph)  # eq. 6-7, every modality at once
        user_out, item_out = out[: self.num_users], out[self.num_users :]
        return user_out, item_out + self.propagate_items(item_out)  # eq. 17

    def embed(self) -> tuple[Tensor, Tensor]:
        return self.propagate(self.item_inputs())

    @torch.no_grad()
    def part_representations(self) -> dict[str, Tensor]:
        """Generic and unique halves of every item, keyed ``'{modality}/generic'`` and
        ``'{modality}/unique'`` (what ``--plots`` maps with t-SNE, SEA Fig. 5-6)."""
        inputs = self.item_inputs()
        items = torch.arange(self.num_items, device=inputs[0].device)
        generic, unique = self.split(inputs, items)
        out = {}
        for name, g, u in zip(self.modalities, generic, unique):
            out[f"{name}/generic"], out[f"{name}/unique"] = g, u
        return out

    def split(self, item_inputs: list[Tensor], items: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Generic and unique halves of the given items, one ``(B, D/2)`` tensor per modality."""
        rows = [x[items] for x in item_inputs]
        return [x[:, : self.half] for x in rows], [x[:, self.half :] for x in rows]

    def alignment(self, generic: list[Tensor]) -> Tensor:
        """eq. 16 between the projected generic halves, averaged over pairs of modalities."""
        assert self.align_heads is not None and self.align_loss is not None
        views = [head(g) for head, g in zip(self.align_heads, generic)]
        pairs = list(itertools.combinations(range(len(views)), 2))
        return sum(self.align_loss(views[a], views[b]) for a, b in pairs) / len(pairs)

    def distancing(self, generic: list[Tensor], unique: list[Tensor]) -> Tensor:
        """eq. 15 (or A.4's negative distance) inside each modality, averaged."""
        assert self.generic_maps is not None and self.unique_maps is not None
        g = [f(x) for f, x in zip(self.generic_maps, generic)]
        u = [f(x) for f, x in zip(self.unique_maps, unique)]
        if self.club is not None:
            if self.training and torch.is_grad_enabled():
                # Fit q(u | g) on the current, detached samples first (eq. 15's alternation);
                # one estimator for all modalities, as the official trainer.
                self.club.fit(torch.cat(g), torch.cat(u))
            terms = [self.club(gm, um) for gm, um in zip(g, u)]
        else:
            assert self.l2_distance is not None
            terms = [self.l2_distance(um, gm) for gm, um in zip(g, u)]  # eq. 30
        return sum(terms) / len(terms)

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> dict[str, Tensor]:
        inputs = self.item_inputs()
        user_out, item_out = self.propagate(inputs)  # once per call
        u = user_out[users]
        pos = (u * item_out[pos_items]).sum(-1)
        neg = (u * item_out[neg_items]).sum(-1)
        ego = ()
        if self.bpr.reg_weight > 0:
            ego = (
                torch.cat([emb(users) for emb in self.user_emb], dim=1),
                torch.cat([x[pos_items] for x in inputs], dim=1),
                torch.cat([x[neg_items] for x in inputs], dim=1),
            )
        terms = {"bpr": self.bpr(pos, neg, *ego)}  # eq. 18
        total = terms["bpr"]
        if self.align_heads is not None or self.generic_maps is not None:
            items = torch.unique(torch.cat([pos_items, neg_items]))
            generic, unique = self.split(inputs, items)
            if self.align_heads is not None:
                terms["align"] = self.alignment(generic)
                total = total + self.alpha * terms["align"]
            if self.generic_maps is not None:
                terms["distance"] = self.distancing(generic, unique)
                total = total + self.beta * terms["distance"]  # eq. 19
        return {"loss": total, **terms}

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(modalities={self.modalities}, dim={self.dim}, "
            f"align={self.align!r}, distance={self.distance!r})"
        )


#: Shared-harness defaults that differ for SEA (official code: Adam lr 1e-4).
DEFAULTS = {"lr": LR}


def build(data: HeteroData, args: argparse.Namespace) -> SEA:
    align, distance = resolve_components(args.variant, args.align, args.distance)
    features = {m: data["item"][f"{m}_feat"] for m in data.modalities}
    return SEA(
        data["user"].num_nodes,
        data["item"].num_nodes,
        data["user", "train", "item"].edge_index,
        features,
        dim=args.dim,
        num_layers=args.layers,
        item_layers=args.item_layers,
        knn_k=args.knn_k,
        item_graph_weights=args.item_graph_weights,
        align=align,
        distance=distance,
        alpha=args.alpha,
        beta=args.beta,
        tau=args.tau,
        proj_hidden=args.proj_hidden,
        proj_dim=args.proj_dim,
        club_dim=args.club_dim,
        club_hidden=args.club_hidden,
        club_steps=args.club_steps,
        club_lr=args.club_lr if args.club_lr is not None else args.lr,
        reg_weight=args.reg_weight,
        bpr_log_base=2.0 if args.bpr_log2 else None,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        default=None,
        help="Table 4: a = SoloSim + CLUB, b = SoloSim + neg. L2, c = InfoNCE + CLUB, "
        "d = InfoNCE + neg. L2 (sets --align and --distance)",
    )
    parser.add_argument(
        "--align", choices=ALIGN_CHOICES, default=None, help="alignment loss (default solosim)"
    )
    parser.add_argument(
        "--distance", choices=DISTANCE_CHOICES, default=None, help="distancing loss (default club)"
    )
    parser.add_argument("--alpha", type=float, default=ALPHA, help="weight of the alignment loss")
    parser.add_argument("--beta", type=float, default=BETA, help="weight of the distancing loss")
    parser.add_argument("--tau", type=float, default=TAU, help="temperature of the alignment loss")
    parser.add_argument("--layers", type=int, default=USER_ITEM_LAYERS, help="user-item layers")
    parser.add_argument("--item-layers", type=int, default=ITEM_LAYERS, help="item-item layers")
    parser.add_argument("--knn-k", type=int, default=KNN_K, help="neighbours of the item graph")
    parser.add_argument(
        "--item-graph-weights",
        choices=GRAPH_WEIGHT_CHOICES,
        default="learnable",
        help="modality weights of the item graph (eq. 11): learnable (paper) or fixed "
        "(official code: image 0.1, text 0.9; else equal)",
    )
    parser.add_argument("--proj-hidden", type=int, default=PROJ_HIDDEN)
    parser.add_argument("--proj-dim", type=int, default=PROJ_DIM)
    parser.add_argument("--club-dim", type=int, default=CLUB_DIM)
    parser.add_argument("--club-hidden", type=int, default=CLUB_HIDDEN)
    parser.add_argument(
        "--club-steps", type=int, default=CLUB_STEPS, help="estimator Adam steps per batch"
    )
    parser.add_argument("--club-lr", type=float, default=None, help="default: --lr")
    parser.add_argument("--reg-weight", type=float, default=REG_WEIGHT, help="L2 weight in BPR")
    parser.add_argument("--bpr-log2", action="store_true", help="log2 BPR (official code)")


#: tune's default space (TPE): log ranges around the official values (alpha 0.012, beta
#: 0.006, tau 0.2, CLI default 0.046). The paper's sensitivity study (Fig. 4) varies the
#: three, but its tick values are not in our text copy of the paper. SEA's BPR has no L2
#: term by default (official code), so reg_weight / reg_form are not searched.
SEARCH_SPACE = {"alpha": "1e-3:1e-1:log", "beta": "1e-3:1e-1:log", "tau": "0.02:1.0:log"}

if __name__ == "__main__":
    run_example("sea", build, add_arguments, defaults=DEFAULTS, search_space=SEARCH_SPACE)
