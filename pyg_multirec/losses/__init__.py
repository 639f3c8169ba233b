"""Losses of multimodal recommendation: ranking, alignment and distancing."""

from pyg_multirec.losses.bpr import BPRLoss
from pyg_multirec.losses.club import CLUBEstimator
from pyg_multirec.losses.distance import NegativeL2Distance
from pyg_multirec.losses.infonce import InfoNCELoss, MultiModalInfoNCE
from pyg_multirec.losses.solosim import SoloSimLoss

__all__ = [
    "BPRLoss",
    "CLUBEstimator",
    "InfoNCELoss",
    "MultiModalInfoNCE",
    "NegativeL2Distance",
    "SoloSimLoss",
]
