"""Deprecated: the MMRec writer and its readers moved to :mod:`pyg_multirec.datasets`.

``from pyg_multirec.io import write_mmrec`` keeps working but warns (``DeprecationWarning``);
import from ``pyg_multirec.datasets`` instead.
"""

from __future__ import annotations

import warnings
from typing import Any

#: Names this module used to define, and the module that defines them now.
_MOVED = {
    "write_mmrec": "pyg_multirec.datasets",
    "read_interactions": "pyg_multirec.datasets",
    "read_feature": "pyg_multirec.datasets",
    "read_ids": "pyg_multirec.datasets",
    "HOLDOUT_FRACTION": "pyg_multirec.datasets.splits",
    "MIN_SPLIT_INTERACTIONS": "pyg_multirec.datasets.splits",
    "TRAIN_LABEL": "pyg_multirec.datasets.layout",
    "VALID_LABEL": "pyg_multirec.datasets.layout",
    "TEST_LABEL": "pyg_multirec.datasets.layout",
    "INTER_HEADER": "pyg_multirec.datasets.layout",
    "FEATURE_SUFFIX": "pyg_multirec.datasets.layout",
    "USER_MAPPING_FILE": "pyg_multirec.datasets.layout",
    "USER_MAPPING_HEADER": "pyg_multirec.datasets.layout",
    "ITEM_MAPPING_FILE": "pyg_multirec.datasets.layout",
    "ITEM_MAPPING_HEADER": "pyg_multirec.datasets.layout",
}

def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(
            f"module 'pyg_multirec.io' has no attribute {name!r}; the MMRec writer and its "
            "readers are in pyg_multirec.datasets"
        )
    module = _MOVED[name]
    warnings.warn(
        f"pyg_multirec.io is deprecated: use 'from {module} import {name}'",
        DeprecationWarning,
        stacklevel=2,
    )
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(_MOVED)
