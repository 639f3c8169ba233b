"""Layers of pyg_multirec: graph convolution, kNN item graphs, structure learning, fusion,
separate learning."""

from pyg_multirec.nn.fusion import AttentionFusion
from pyg_multirec.nn.item_graph import MultiModalItemGraph
from pyg_multirec.nn.knn import knn_item_graph, topk_cosine_neighbors
from pyg_multirec.nn.knn_structure import KNNStructureLayer
from pyg_multirec.nn.lightgcn import LightGCNPropagation
from pyg_multirec.nn.lightgcn_conv import LightGCNConv
from pyg_multirec.nn.linear_chain import linear_chain
from pyg_multirec.nn.separate_learning import ProjectionHead, SeparateLearning
from pyg_multirec.nn.utils import (
    bipartite_to_homogeneous,
    gather_rows,
    random_walk_self_loop_weights,
)

__all__ = [
    "LightGCNConv",
    "LightGCNPropagation",
    "bipartite_to_homogeneous",
    "gather_rows",
    "random_walk_self_loop_weights",
    "knn_item_graph",
    "topk_cosine_neighbors",
    "KNNStructureLayer",
    "MultiModalItemGraph",
    "AttentionFusion",
    "SeparateLearning",
    "linear_chain",
    "ProjectionHead",
]
