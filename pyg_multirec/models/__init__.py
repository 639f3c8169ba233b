"""Recommendation models: the :class:`Recommender` interface that the trainer and the
evaluator use, and the collaborative-filtering baselines :class:`MF` and :class:`LightGCN`
(also the backbones of MICRO)."""

from pyg_multirec.models.base import Recommender
from pyg_multirec.models.lightgcn import LightGCN
from pyg_multirec.models.mf import MF

__all__ = ["Recommender", "MF", "LightGCN"]
