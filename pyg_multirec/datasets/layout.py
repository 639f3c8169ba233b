"""The MMRec folder layout (https://github.com/enoche/MMRec), named once for the reader
(:class:`~pyg_multirec.datasets.MMRecDataset`), the writer
(:func:`~pyg_multirec.datasets.write_mmrec`) and the generator
(:class:`~pyg_multirec.datasets.SyntheticMultiModal`)::

    root/name/name.inter           userID  itemID  timestamp  x_label   (tab-separated)
    root/name/{modality}_feat.npy  [num_items, d_m], row i = item i
    root/name/u_id_mapping.csv     userID_orig  userID                 (tab-separated)
    root/name/i_id_mapping.csv     asin  itemID                        (tab-separated)
"""

from __future__ import annotations

from types import MappingProxyType

INTER_SUFFIX = ".inter"
FEATURE_SUFFIX = "_feat.npy"
USER_COLUMN = "userID"
ITEM_COLUMN = "itemID"
TIME_COLUMN = "timestamp"
LABEL_COLUMN = "x_label"
#: Columns of the ``.inter`` files that :func:`~pyg_multirec.datasets.write_mmrec` writes;
#: a reader needs only the user, item and label columns (others, e.g. ``rating``, may exist).
INTER_HEADER = (USER_COLUMN, ITEM_COLUMN, TIME_COLUMN, LABEL_COLUMN)
#: ``x_label`` value of each split.
TRAIN_LABEL, VALID_LABEL, TEST_LABEL = 0, 1, 2
SPLIT_LABELS = MappingProxyType({"train": TRAIN_LABEL, "valid": VALID_LABEL, "test": TEST_LABEL})
USER_MAPPING_FILE, USER_MAPPING_HEADER = "u_id_mapping.csv", ("userID_orig", USER_COLUMN)
ITEM_MAPPING_FILE, ITEM_MAPPING_HEADER = "i_id_mapping.csv", ("asin", ITEM_COLUMN)


def inter_file(name: str) -> str:
    """File name of the interactions of dataset ``name``: ``name.inter``."""
    return f"{name}{INTER_SUFFIX}"


def feature_file(modality: str) -> str:
    """File name of a modality's features: ``{modality}_feat.npy``."""
    return f"{modality}{FEATURE_SUFFIX}"


def modality_of(file_name: str) -> str | None:
    """The modality a feature file holds (``image_feat.npy`` -> ``'image'``), else ``None``."""
    if file_name.endswith(FEATURE_SUFFIX) and len(file_name) > len(FEATURE_SUFFIX):
        return file_name[: -len(FEATURE_SUFFIX)]
    return None
