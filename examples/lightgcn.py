"""LightGCN baseline (He et al., SIGIR 2020), built from :class:`LightGCNPropagation`.

User and item embeddings are propagated over the normalised user-item training graph and
the layer outputs are averaged (SEA eq. 6-7).

    python examples/lightgcn.py                       # generated data, no files needed
    python examples/lightgcn.py --dataset ml100k      # MovieLens-100K from ../shared/data
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
from pyg_multirec.nn import LightGCNPropagation, bipartite_to_homogeneous


class LightGCN(Recommender):
    """LightGCN: ``num_layers`` parameter-free propagations, mean over layers, BPR loss.

    Args:
        num_users, num_items: node counts.
        train_edge_index: ``[2, E]`` (user, item) training interactions.
        dim: embedding dimension.
        num_layers: propagation layers.
        reg_weight: L2 weight of the batch's layer-0 embeddings.
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
    ):
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.user_emb = torch.nn.Embedding(num_users, dim)
        self.item_emb = torch.nn.Embedding(num_items, dim)
        self.register_buffer(
            "graph", bipartite_to_homogeneous(train_edge_index, num_users, num_items)
        )
        self.propagation = LightGCNPropagation(num_layers, combine="mean")
        self.bpr = BPRLoss(reg_weight=reg_weight, reg_form=reg_form)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.user_emb.weight)
        torch.nn.init.xavier_uniform_(self.item_emb.weight)

    def embed(self) -> tuple[Tensor, Tensor]:
        x = torch.cat([self.user_emb.weight, self.item_emb.weight])
        out = self.propagation(x, self.graph)
        return out[: self.num_users], out[self.num_users :]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> dict[str, Tensor]:
        user_out, item_out = self.embed()
        u = user_out[users]
        pos = (u * item_out[pos_items]).sum(-1)
        neg = (u * item_out[neg_items]).sum(-1)
        ego = (self.user_emb(users), self.item_emb(pos_items), self.item_emb(neg_items))
        return {"loss": self.bpr(pos, neg, *ego)}


def build(data: HeteroData, args: argparse.Namespace) -> LightGCN:
    return LightGCN(
        data["user"].num_nodes,
        data["item"].num_nodes,
        data["user", "train", "item"].edge_index,
        dim=args.dim,
        num_layers=args.layers,
        reg_weight=args.reg_weight,
        reg_form=args.reg_form,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layers", type=int, default=2, help="propagation layers")
    parser.add_argument("--reg-weight", type=float, default=1e-4, help="L2 weight of embeddings")
    parser.add_argument(
        "--reg-form", choices=REG_FORMS, default="squared", help="L2 form (MMRec grids: norm)"
    )


#: tune's default space: MMRec's LightGCN grid, whose weights are on EmbLoss's (norm) scale.
SEARCH_SPACE = {
    "layers": [1, 2, 3, 4],
    "reg_weight": [1e-2, 1e-3, 1e-4, 1e-5, 1e-6],
    "reg_form": ["norm"],
}

if __name__ == "__main__":
    run_example("lightgcn", build, add_arguments, search_space=SEARCH_SPACE)
