"""MF-BPR baseline (Rendle et al., UAI 2009): free user and item embeddings, inner product.

python examples/mf.py                       # generated data, no files needed
python examples/mf.py --dataset ml100k      # MovieLens-100K from ../shared/data
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_multirec.experiment import run_example
from pyg_multirec.losses import BPRLoss
from pyg_multirec.losses.bpr import REG_FORMS
from pyg_multirec.models import Recommender


class MF(Recommender):
    """Matrix factorisation trained with BPR; embeddings Xavier-initialised (MMRec)."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 64,
        reg_weight: float = 1e-4,
        reg_form: str = "squared",
    ):
        super().__init__()
        self.user_emb = torch.nn.Embedding(num_users, dim)
        self.item_emb = torch.nn.Embedding(num_items, dim)
        self.bpr = BPRLoss(reg_weight=reg_weight, reg_form=reg_form)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.user_emb.weight)
        torch.nn.init.xavier_uniform_(self.item_emb.weight)

    def embed(self) -> tuple[Tensor, Tensor]:
        return self.user_emb.weight, self.item_emb.weight

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> dict[str, Tensor]:
        u, p, n = self.user_emb(users), self.item_emb(pos_items), self.item_emb(neg_items)
        loss = self.bpr((u * p).sum(-1), (u * n).sum(-1), u, p, n)
        return {"loss": loss}


def build(data: HeteroData, args: argparse.Namespace) -> MF:
    num_users, num_items = data["user"].num_nodes, data["item"].num_nodes
    return MF(num_users, num_items, args.dim, args.reg_weight, args.reg_form)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reg-weight", type=float, default=1e-4, help="L2 weight of batch embeddings"
    )
    parser.add_argument(
        "--reg-form", choices=REG_FORMS, default="squared", help="L2 form (MMRec grids: norm)"
    )


#: tune's default space: MMRec's BPR grid, whose weights are on EmbLoss's (norm) scale.
SEARCH_SPACE = {"reg_weight": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5], "reg_form": ["norm"]}

if __name__ == "__main__":
    run_example("mf", build, add_arguments, search_space=SEARCH_SPACE)
