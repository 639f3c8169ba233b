"""LightGCN baseline (He et al., SIGIR 2020): user and item embeddings propagated over the
normalised user-item training graph, layer outputs averaged (SEA eq. 6-7). The model is
:class:`pyg_multirec.models.LightGCN`; this script gives it the shared command line.

    python examples/lightgcn.py                       # generated data, no files needed
    python examples/lightgcn.py --dataset ml100k      # MovieLens-100K from ../shared/data
    python examples/lightgcn.py tune --dataset ml100k --jobs 2 --seeds 0,1,2

The defaults are the configuration that ``examples/reproduce_results.py`` validates on ml100k:
``tune`` over MMRec's grid (layers x reg_weight, MMRec's ``reg_form="norm"``,
``--pair-sampling users``), every trial run to its own early stop (no pruning), its 3 best
trials on seed 0 trained again with seeds 1 and 2, the best mean valid Recall@20 chosen:
2 layers, reg_weight 1e-3 (valid 0.2316 / 0.2282 / 0.1998 on seeds 0 / 1 / 2; test Recall@20
0.1619 +- 0.0126, seed 0 alone 0.1689). Seed 2 stops at epoch 105 in a plateau. The 1-layer
point with reg_weight 1e-2, the pick of the earlier, pruned search, has the higher mean valid
score over the same seeds (0.2242 / 0.2245 / 0.2267) but is not among the seed-0 best 3;
``--layers 1 --reg-weight 1e-2`` trains it (test 0.1670 +- 0.0022). See ``docs/results.md``.
"""

from __future__ import annotations

import argparse

from torch_geometric.data import HeteroData

from pyg_multirec.experiment import run_example
from pyg_multirec.losses.bpr import REG_FORMS
from pyg_multirec.models import LightGCN

LAYERS, REG_WEIGHT, REG_FORM = 2, 1e-3, "norm"  # validated on ml100k (see above)
#: Shared-harness defaults that differ for LightGCN: uniform users, then one of their pairs.
DEFAULTS = {"pair_sampling": "users"}


def build(data: HeteroData, args: argparse.Namespace) -> LightGCN:
    return LightGCN(
        data["user"].num_nodes,
        data["item"].num_nodes,
        data["user", "train", "item"].edge_index,
        dim=args.dim,
        num_layers=args.layers,
        reg_weight=args.reg_weight,
        reg_form=getattr(args, "reg_form", "squared"),  # checkpoints older than the flag
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layers", type=int, default=LAYERS, help="propagation layers")
    parser.add_argument("--reg-weight", type=float, default=REG_WEIGHT,
                        help="weight of the ego-embedding regulariser")  # fmt: skip
    parser.add_argument(
        "--reg-form", choices=REG_FORMS, default=REG_FORM,
        help="squared L2 / 2 (LightGCN) or MMRec's non-squared norm, both per batch size",
    )  # fmt: skip


#: tune's default space: MMRec's LightGCN grid, whose weights are on EmbLoss's (norm) scale.
SEARCH_SPACE = {
    "layers": [1, 2, 3, 4],
    "reg_weight": [1e-2, 1e-3, 1e-4, 1e-5, 1e-6],
    "reg_form": ["norm"],
}

if __name__ == "__main__":
    run_example("lightgcn", build, add_arguments, defaults=DEFAULTS, search_space=SEARCH_SPACE)
