"""MICRO (Zhang et al., TKDE 2022): latent item-item structures from multimodal features,
contrastive modality fusion, plugged into a CF backbone (MF or LightGCN).

    python examples/micro.py                                   # generated data, no files needed
    python examples/micro.py --dataset ml100k                  # MovieLens-100K
    python examples/micro.py --backbone lightgcn --structure frozen  # fixed kNN graphs
    python examples/micro.py --dataset ml100k --cold-start --backbone lightgcn --lr 1e-5

The defaults are the configuration that ``examples/reproduce_results.py`` validates on ml100k
(warm): ``tune`` over k x lambda x beta (``SEARCH_SPACE``) with each backbone, every trial
run to its own early stop, its 3 best on seed 0 trained again with seeds 1 and 2, the best
mean valid Recall@20 chosen. With the MF backbone: k 20, lambda 0.5, beta 0.01 (valid
0.2261 / 0.2285 / 0.2211 on seeds 0 / 1 / 2; test Recall@20 0.1715 +- 0.0021), the highest
mean valid score of the finished rows; the LightGCN backbone's search is not finished (if
it validates higher, the defaults move to it). The cold-start row (LightGCN backbone)
chose ``--backbone lightgcn --k 10 --skip-lambda 0.9 --contrastive-weight 0.1``. The
paper's values stay the :class:`MICRO` constructor's defaults. See ``docs/results.md``.

Of the settings not searched, where the paper and the official code
(github.com/CRIPAC-DIG/MICRO) differ, the paper's is the default and the code's is in the
flag's help: L2 weight 1e-4 (code 1e-5), negative similarities suppressed (code keeps them);
no lr decay (code 0.96 ** (epoch / 50), ``train(lr_decay=...)``). Picked on ml100k
cold-start validation (best cold valid Recall@20 in 10 epochs 0.021 -> 0.029 -> 0.053): the
code's LightGCN graph ``D^-1 (A + I)`` (``--backbone-norm rw-self-loop``: an item without
training pairs keeps its embedding) and negatives from the items with training pairs
(``--negatives warm``; the code's: ``all``). Cold start (``--cold-start``, Sec. 4.1.3): 20%
of the items lose their training pairs, half are validation items, half test items; the
official README trains it with ``--lr 1e-5`` (warm 5e-4) on the LightGCN backbone (the last
command above). Batches draw a uniform user, then one of its pairs (``--pair-sampling
users``), as the code does: on ml100k (5 seeds, warm) it raised valid Recall@20 on every
seed and removed an early plateau on which patience 20 stopped some runs of the pass over
the pairs (``edges``); ``docs/results.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import ModuleList
from torch_geometric.data import HeteroData

from pyg_multirec.experiment import run_example
from pyg_multirec.losses import BPRLoss, MultiModalInfoNCE
from pyg_multirec.losses.bpr import REG_FORMS
from pyg_multirec.models import MF, LightGCN, Recommender
from pyg_multirec.models.lightgcn import NORMALIZATIONS
from pyg_multirec.nn import AttentionFusion, KNNStructureLayer, LightGCNConv, gather_rows

BACKBONES = ("lightgcn", "mf")
STRUCTURES = ("learned", "frozen")
CONTRASTIVE_ITEMS = ("all", "batch")
#: When the learned graphs get gradient: every batch, or only the first batch of each epoch
#: (the official code's schedule; the graph is reused, detached, by the epoch's other batches).
STRUCTURE_GRADS = ("every-batch", "first-batch")
PAPER_K = 10
PAPER_SKIP_LAMBDA = 0.7
OFFICIAL_SKIP_LAMBDA = 0.9
PAPER_REG_WEIGHT = 1e-4
OFFICIAL_REG_WEIGHT = 1e-5
PAPER_TEMPERATURE = 0.5
PAPER_CONTRASTIVE_WEIGHT = 0.03  # beta of eq. 16
PAPER_LR = 5e-4
PAPER_BATCH_SIZE = 1024
#: The command line's defaults: the configuration validated on ml100k, warm (see above).
TUNED_BACKBONE = "mf"
TUNED_K = 20
TUNED_SKIP_LAMBDA = 0.5
TUNED_CONTRASTIVE_WEIGHT = 0.01
#: Shared-harness defaults that differ for MICRO: the paper's lr and batch, warm negatives,
#: the official code's user-uniform batches.
DEFAULTS = {
    "lr": PAPER_LR, "batch_size": PAPER_BATCH_SIZE, "negatives": "warm", "pair_sampling": "users"
}
OFFICIAL_ITEM_LAYERS = 1
OFFICIAL_BACKBONE_LAYERS = 2
# Anchor rows per block of the all-item InfoNCE (memory O(block * N), never N x N); the
# official code's value.
CONTRASTIVE_BLOCK_SIZE = 4096
# The learned neighbours are reselected only in on_epoch_start, never automatically.
NO_AUTOMATIC_REBUILD = sys.maxsize


class MICRO(Recommender):
    r"""MICRO on a CF backbone, from `"Latent Structure Mining with Contrastive Modality
    Fusion for Multimedia Recommendation" <https://arxiv.org/abs/2111.00678>`_.

    For every modality :math:`m`, a :class:`~pyg_multirec.nn.KNNStructureLayer` mixes the
    kNN graph of the raw features with one learned from transformed features (eq. 1-5,
    :math:`\mathbf{A}^m = \lambda\tilde{\mathbf{S}}^m + (1-\lambda)\tilde{\mathbf{A}}^m`).
    The backbone's item ID embeddings are convolved :math:`L` times over each graph, the
    results fused by attention and tied to the fusion by a contrastive loss; the fused
    vector enhances the backbone's item output:

    .. math::
        \mathbf{H}^m_{(l)} = \mathbf{A}^m \mathbf{H}^m_{(l-1)},\; \mathbf{H}^m_{(0)} =
        \mathbf{E}_{item} \;\text{(eq. 6)}, \qquad
        \mathbf{h}_i = \sum_m \alpha_i^m \mathbf{h}_i^m \;\text{(eq. 7-9)}, \qquad
        \hat{\mathbf{x}}_i = \tilde{\mathbf{x}}_i + \frac{\mathbf{h}_i}{\|\mathbf{h}_i\|_2}
        \;\text{(eq. 13)},

    .. math::
        \hat{y}_{ui} = \tilde{\mathbf{x}}_u^{\top}\hat{\mathbf{x}}_i \;\text{(eq. 14)}, \qquad
        \mathcal{L} = \mathcal{L}_{BPR} + \beta \mathcal{L}_C \;\text{(eq. 15-16)}.

    Choices (documented differences from the official code):

    * Learned graph: its neighbours are selected in :meth:`on_epoch_start` (as the official
      code rebuilds the graph at the first batch of each epoch) and kept for the epoch; the
      weights of the kept edges are recomputed, with gradient, at every batch, so the
      structure layer learns from every batch (``structure_grad='every-batch'``). The
      official code detaches the graph after the first batch of the epoch;
      ``structure_grad='first-batch'`` does the same (the other batches reuse that graph
      without transforming the raw features again, which is much cheaper per batch).
    * :math:`\mathcal{L}_C` (eq. 10-12, :class:`~pyg_multirec.losses.MultiModalInfoNCE`) is
      taken over all items, as in the official code (``contrastive_items='all'``), in blocks
      of :obj:`CONTRASTIVE_BLOCK_SIZE` anchors (memory :math:`O(\text{block} \cdot N)`);
      ``'batch'`` restricts it to the distinct positive and negative items of the batch,
      which is cheaper on large catalogues. It follows the paper (both directions, mean
      over modalities); the code sums one direction over modalities.
    * The L2 term of BPR acts on the batch's layer-0 (ego) embeddings, as in the LightGCN
      example; the official code regularises the final (enhanced) embeddings.
    * Raw features stay fixed (the official code fine-tunes them as embeddings).

    Args:
        backbone: a :class:`~pyg_multirec.models.LightGCN` or :class:`~pyg_multirec.models.MF`
            (anything with ``user_emb``, ``item_emb`` embeddings and ``embed()``).
        features: one ``[num_items, d_m]`` float tensor per modality (at least one).
        k: neighbours per item in every kNN graph.
        skip_lambda: weight :math:`\lambda` of the initial graph (paper 0.7, code 0.9).
        structure: ``'learned'`` (eq. 4-5) or ``'frozen'`` (raw-feature kNN graphs only).
        item_layers: item-graph convolutions :math:`L` (eq. 6).
        temperature: :math:`\tau` of eq. 11-12.
        contrastive_weight: :math:`\beta` of eq. 16.
        reg_weight: L2 weight of the batch embeddings.
        contrastive_items: ``'all'`` items or the ``'batch'`` items in :math:`\mathcal{L}_C`.
        reg_form: ``'squared'`` (official code) or ``'norm'`` (MMRec), see :class:`BPRLoss`.
        structure_grad: ``'every-batch'`` or ``'first-batch'`` (official code): which
            batches of an epoch the learned graphs get gradient from.

    Shapes:
        - **embed():** users :math:`(U, D)`, items :math:`(N, D)`
    """

    def __init__(
        self,
        backbone: Recommender,
        features: Sequence[Tensor],
        k: int = PAPER_K,
        skip_lambda: float = PAPER_SKIP_LAMBDA,
        structure: str = "learned",
        item_layers: int = OFFICIAL_ITEM_LAYERS,
        temperature: float = PAPER_TEMPERATURE,
        contrastive_weight: float = PAPER_CONTRASTIVE_WEIGHT,
        reg_weight: float = PAPER_REG_WEIGHT,
        contrastive_items: str = "all",
        reg_form: str = "squared",
        structure_grad: str = "every-batch",
    ):
        super().__init__()
        if not all(hasattr(backbone, name) for name in ("user_emb", "item_emb", "embed")):
            raise TypeError("backbone must have user_emb, item_emb and embed() (MF or LightGCN)")
        num_items, dim = backbone.item_emb.weight.shape
        _check_features(features, num_items)
        if structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES} (got {structure!r})")
        if structure_grad not in STRUCTURE_GRADS:
            raise ValueError(
                f"structure_grad must be one of {STRUCTURE_GRADS} (got {structure_grad!r})"
            )
        if structure_grad == "first-batch" and structure != "learned":
            raise ValueError("structure_grad='first-batch' needs structure='learned'")
        if contrastive_items not in CONTRASTIVE_ITEMS:
            raise ValueError(
                f"contrastive_items must be one of {CONTRASTIVE_ITEMS} (got {contrastive_items!r})"
            )
        if isinstance(item_layers, bool) or not isinstance(item_layers, int) or item_layers < 1:
            raise ValueError(f"item_layers must be a positive int (got {item_layers!r})")
        if not contrastive_weight >= 0:
            raise ValueError(f"contrastive_weight must be >= 0 (got {contrastive_weight})")
        self.backbone = backbone
        self.num_modalities = len(features)
        self.item_layers = item_layers
        self.contrastive_weight = float(contrastive_weight)
        self.contrastive_items = contrastive_items
        for m, x in enumerate(features):  # raw features: rebuilt from the data, not saved
            self.register_buffer(f"feature_{m}", x.detach().float(), persistent=False)
        self.structure = ModuleList(
            KNNStructureLayer(
                x.size(1),
                dim,
                k,
                skip_lambda,
                mode=structure,
                rebuild_every=NO_AUTOMATIC_REBUILD,
                detach_after_first=structure_grad == "first-batch",
            )
            for x in features
        )
        # One convolution per modality: a frozen graph is normalised once and cached.
        self.item_conv = ModuleList(
            LightGCNConv(cached=structure == "frozen", normalize=False) for _ in features
        )
        self.fusion = AttentionFusion(dim, dim)
        self.contrastive = MultiModalInfoNCE(temperature, block_size=CONTRASTIVE_BLOCK_SIZE)
        self.bpr = BPRLoss(reg_weight=reg_weight, reg_form=reg_form)

    def raw_features(self) -> list[Tensor]:
        """The fixed modality features, one [num_items, d_m] tensor per modality."""
        return [getattr(self, f"feature_{m}") for m in range(self.num_modalities)]

    def on_epoch_start(self, epoch: int) -> None:
        """Selects the learned graphs' neighbours anew from the current parameters."""
        with torch.no_grad():
            for layer, x in zip(self.structure, self.raw_features()):
                layer(x, force_rebuild=True)

    def item_representations(self) -> tuple[list[Tensor], Tensor]:
        """Modality-aware item representations ``h^m`` (eq. 6) and their fusion ``h`` (eq. 9)."""
        modal = []
        for layer, conv, x in zip(self.structure, self.item_conv, self.raw_features()):
            edge_index, edge_weight = layer(x)  # eq. 1-5
            h = self.backbone.item_emb.weight
            for _ in range(self.item_layers):
                h = conv(h, edge_index, edge_weight)  # eq. 6
            modal.append(h)
        fused, _ = self.fusion(modal)  # eq. 7-9
        return modal, fused

    def _outputs(self) -> tuple[Tensor, Tensor, list[Tensor], Tensor]:
        user_out, item_out = self.backbone.embed()
        modal, fused = self.item_representations()
        item_out = item_out + F.normalize(fused, dim=-1)  # eq. 13
        return user_out, item_out, modal, fused

    def embed(self) -> tuple[Tensor, Tensor]:
        user_out, item_out, _, _ = self._outputs()
        return user_out, item_out

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> dict[str, Tensor]:
        user_out, item_out, modal, fused = self._outputs()
        u = gather_rows(user_out, users)
        pos_out, neg_out = gather_rows(item_out, pos_items), gather_rows(item_out, neg_items)
        pos, neg = self._pair_scores(u, pos_out, neg_out)  # eq. 14
        net = self.backbone
        ego = (net.user_emb(users), net.item_emb(pos_items), net.item_emb(neg_items))
        bpr = self.bpr(pos, neg, *ego)  # eq. 15
        if self.contrastive_items == "batch":
            items = torch.cat([pos_items, neg_items]).unique()
            modal, fused = [gather_rows(h, items) for h in modal], gather_rows(fused, items)
        contrastive = self.contrastive(modal, fused)  # eq. 10-12
        loss = bpr + self.contrastive_weight * contrastive  # eq. 16
        return {"loss": loss, "bpr": bpr, "contrastive": contrastive}


def _check_features(features: Sequence[Tensor], num_items: int) -> None:
    if isinstance(features, Tensor) or not isinstance(features, (list, tuple)) or not features:
        raise ValueError("features must be a non-empty list of [num_items, d_m] tensors")
    for m, x in enumerate(features):
        if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
            raise ValueError(f"features[{m}] must be a 2-D float tensor [num_items, d_m]")
        if x.size(0) != num_items:
            raise ValueError(f"features[{m}] has {x.size(0)} rows, the backbone {num_items} items")


def build(data: HeteroData, args: argparse.Namespace) -> MICRO:
    num_users, num_items = data["user"].num_nodes, data["item"].num_nodes
    if args.backbone == "lightgcn":
        backbone = LightGCN(
            num_users,
            num_items,
            data["user", "train", "item"].edge_index,
            dim=args.dim,
            num_layers=args.layers,
            normalization=getattr(args, "backbone_norm", "sym"),  # older checkpoints: sym
        )
    else:
        backbone = MF(num_users, num_items, dim=args.dim)
    return MICRO(
        backbone,
        [data["item"][f"{m}_feat"] for m in data.modalities],
        k=args.k,
        skip_lambda=args.skip_lambda,
        structure=args.structure,
        item_layers=args.item_layers,
        temperature=args.temperature,
        contrastive_weight=args.contrastive_weight,
        reg_weight=args.reg_weight,
        contrastive_items=args.contrastive_items,
        reg_form=args.reg_form,
        structure_grad=getattr(args, "structure_grad", "every-batch"),  # older checkpoints
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", choices=BACKBONES, default=TUNED_BACKBONE)
    parser.add_argument("--layers", type=int, default=OFFICIAL_BACKBONE_LAYERS, help="LightGCN L")
    norms = "LightGCN graph: sym D^-1/2 A D^-1/2, rw-self-loop D^-1 (A + I) (official code)"
    parser.add_argument(
        "--backbone-norm", choices=NORMALIZATIONS, default="rw-self-loop", help=norms
    )
    k_help = f"neighbours per item (paper {PAPER_K})"
    parser.add_argument("--k", type=int, default=TUNED_K, help=k_help)
    lam = (
        f"weight of the raw-feature graph (eq. 5; paper {PAPER_SKIP_LAMBDA}, "
        f"official code {OFFICIAL_SKIP_LAMBDA})"
    )
    parser.add_argument("--skip-lambda", type=float, default=TUNED_SKIP_LAMBDA, help=lam)
    structure = "learn the item graphs (eq. 4-5) or keep the raw-feature kNN graphs"
    parser.add_argument("--structure", choices=STRUCTURES, default="learned", help=structure)
    parser.add_argument("--item-layers", type=int, default=OFFICIAL_ITEM_LAYERS, help="L of eq. 6")
    parser.add_argument("--temperature", type=float, default=PAPER_TEMPERATURE)
    beta_help = f"beta (eq. 16; paper {PAPER_CONTRASTIVE_WEIGHT})"
    parser.add_argument(
        "--contrastive-weight", type=float, default=TUNED_CONTRASTIVE_WEIGHT, help=beta_help
    )
    reg = (
        f"L2 weight of the batch embeddings (paper {PAPER_REG_WEIGHT:g}, "
        f"official code {OFFICIAL_REG_WEIGHT:g})"
    )
    parser.add_argument("--reg-weight", type=float, default=PAPER_REG_WEIGHT, help=reg)
    parser.add_argument("--reg-form", choices=REG_FORMS, default="squared", help="MMRec: norm")
    items = "items of the contrastive loss: all (official) or those of the batch (cheaper)"
    parser.add_argument("--contrastive-items", choices=CONTRASTIVE_ITEMS, default="all", help=items)
    grad = "learned graphs get gradient from every batch, or from the first batch of each "
    grad += "epoch and are reused detached by the others (official code; cheaper)"
    parser.add_argument("--structure-grad", choices=STRUCTURE_GRADS, default="every-batch",
                        help=grad)  # fmt: skip


#: tune's default space, around the paper's choices (k 10, lambda 0.7 (code 0.9), beta 0.03;
#: its sensitivity figures 4-5 vary k, lambda and beta, whose tick values are not in our text
#: copy of the paper). The official code's L2 term is squared. beta reaches 0.3: in the first
#: (unfinished) ml100k search the best of 7 finished points had beta 0.1, the old grid's top.
SEARCH_SPACE = {
    "k": [5, 10, 20],
    "skip_lambda": [0.5, 0.7, 0.9],
    "contrastive_weight": [0.01, 0.03, 0.1, 0.3],
    "reg_form": ["squared"],
}

if __name__ == "__main__":
    run_example("micro", build, add_arguments, defaults=DEFAULTS, search_space=SEARCH_SPACE)
