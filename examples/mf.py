"""MF-BPR baseline (Rendle et al., UAI 2009): free user and item embeddings, inner product.
The model is :class:`pyg_multirec.models.MF`; this script gives it the shared command line.

python examples/mf.py                       # generated data, no files needed
python examples/mf.py --dataset ml100k      # MovieLens-100K from ../shared/data
python examples/mf.py tune --dataset ml100k --search-seeds 0,1,2 --seeds 0,1,2

The defaults are the best validated point on ml100k of MMRec's BPR grid (reg_weight in MMRec's
``reg_form="norm"``) crossed with the learning rates {1e-3, 2e-3, 5e-3}, searched under each
pair sampler, each point scored by its mean valid Recall@20 over seeds 0-2: reg_weight 1.0,
lr 1e-3, ``--pair-sampling users`` (valid 0.2233; test Recall@20 0.1638 +- 0.0029 over seeds
0-2, ``docs/results.md``). Under ``edges`` (MMRec's pass over the interactions) the best point
was lr 5e-3 (valid 0.2219, test 0.1586 +- 0.0006): at lr 1e-3 MF sat on a plateau near valid
0.18 for 20-50 epochs and whether patience 20 outlasted it depended on the seed. Drawing
uniform users removes that plateau.
"""

from __future__ import annotations

import argparse

from torch_geometric.data import HeteroData

from pyg_multirec.experiment import run_example
from pyg_multirec.losses.bpr import REG_FORMS
from pyg_multirec.models import MF

REG_WEIGHT, REG_FORM, LR = 1.0, "norm", 1e-3  # validated on ml100k (see above)
#: Shared-harness defaults that differ for MF: the validated lr, uniform users then a pair.
DEFAULTS = {"lr": LR, "pair_sampling": "users"}


def build(data: HeteroData, args: argparse.Namespace) -> MF:
    return MF(
        data["user"].num_nodes,
        data["item"].num_nodes,
        dim=args.dim,
        reg_weight=args.reg_weight,
        reg_form=getattr(args, "reg_form", "squared"),  # checkpoints older than the flag
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reg-weight", type=float, default=REG_WEIGHT, help="weight of the embedding regulariser"
    )
    parser.add_argument(
        "--reg-form", choices=REG_FORMS, default=REG_FORM,
        help="squared L2 / 2 (LightGCN) or MMRec's non-squared norm, both per batch size",
    )  # fmt: skip


#: tune's default space: MMRec's BPR grid, whose weights are on EmbLoss's (norm) scale, crossed
#: with three learning rates (MMRec fixes 1e-3, where MF's early stop depends on the seed).
SEARCH_SPACE = {
    "reg_weight": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
    "reg_form": ["norm"],
    "lr": [1e-3, 2e-3, 5e-3],
}

if __name__ == "__main__":
    run_example("mf", build, add_arguments, defaults=DEFAULTS, search_space=SEARCH_SPACE)
