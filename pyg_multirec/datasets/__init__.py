"""Datasets of :mod:`pyg_multirec`: each yields one :class:`~torch_geometric.data.HeteroData`
following the data contract of ``docs/design.md`` (checked by :func:`validate_data`); and
the writer of the MMRec layout (:func:`write_mmrec`, :func:`convert_files`) with the readers
of the files it converts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch_geometric.data import HeteroData

from pyg_multirec.datasets.mmrec import MMRecDataset
from pyg_multirec.datasets.mmrec_writer import MMRecSummary, convert_files, write_mmrec
from pyg_multirec.datasets.readers import read_feature, read_ids, read_interactions
from pyg_multirec.datasets.splits import cold_start_split, holdout_labels
from pyg_multirec.datasets.synthetic import SYNTHETIC, SyntheticMultiModal
from pyg_multirec.datasets.validation import validate_data

DEFAULT_ROOT = "../shared/data"


def load_dataset(name: str, root: str | Path = DEFAULT_ROOT, **kwargs: Any) -> HeteroData:
    """Returns the :class:`~torch_geometric.data.HeteroData` of the dataset :obj:`name`.

    ``'synthetic'`` builds ``SyntheticMultiModal(**kwargs)[0]`` (:obj:`root` is ignored);
    any other name loads ``MMRecDataset(root, name, **kwargs)[0]`` from the MMRec folder
    ``root/name`` (e.g. ``'ml100k'``, ``'baby'``; :obj:`kwargs` may then hold
    ``transform``, ``pre_transform`` or ``force_reload``).

    Args:
        name (str): ``'synthetic'`` or the name of an MMRec dataset folder under :obj:`root`.
        root (str or Path, optional): folder holding the MMRec dataset folders.
            (default: ``'../shared/data'``)
        **kwargs: passed to :class:`SyntheticMultiModal` or :class:`MMRecDataset`.
    """
    if not isinstance(name, str):
        raise TypeError(f"'name' must be a str (got {type(name).__name__})")
    if name == SYNTHETIC:
        return SyntheticMultiModal(**kwargs)[0]
    return MMRecDataset(root, name, **kwargs)[0]


__all__ = [
    "MMRecDataset",
    "MMRecSummary",
    "SyntheticMultiModal",
    "cold_start_split",
    "convert_files",
    "holdout_labels",
    "load_dataset",
    "read_feature",
    "read_ids",
    "read_interactions",
    "validate_data",
    "write_mmrec",
]
