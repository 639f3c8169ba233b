"""Losses of multimodal recommendation: ranking, alignment and distancing."""

from pyg_multirec._checks import value_checks
from pyg_multirec.losses.bpr import BPRLoss
from pyg_multirec.losses.club import CLUBEstimator, FittedCLUB
from pyg_multirec.losses.distance import NegativeL2Distance
from pyg_multirec.losses.infonce import InfoNCELoss, MultiModalInfoNCE
from pyg_multirec.losses.solosim import SoloSimLoss

__all__ = [
    "BPRLoss",
    "CLUBEstimator",
    "FittedCLUB",
    "InfoNCELoss",
    "MultiModalInfoNCE",
    "NegativeL2Distance",
    "SoloSimLoss",
    "value_checks",
]
