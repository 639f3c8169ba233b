"""Checks that a :class:`~torch_geometric.data.HeteroData` object follows the data contract.

The contract (``docs/design.md``) every dataset of :mod:`pyg_multirec` yields:

* ``data['user'].num_nodes``, ``data['item'].num_nodes``: counts; ids are contiguous
  ``0..n-1``;
* ``data['item'][f'{m}_feat']``: floating ``[num_items, d_m]`` features of modality ``m``
  (float32 from the loaders);
* ``data.modalities``: plain list of modality names, sorted;
* ``data['user', s, 'item'].edge_index`` for ``s`` in ``('train', 'valid', 'test')``:
  long ``[2, E_s]``, row 0 user ids, row 1 item ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_multirec._checks import check_count

USER = "user"
ITEM = "item"
SPLITS = ("train", "valid", "test")
# How many offending ids an error message lists.
MAX_IDS_SHOWN = 10


def split_edge_type(split: str) -> tuple[str, str, str]:
    """The edge type ``('user', split, 'item')`` holding the interactions of ``split``."""
    return (USER, split, ITEM)


def feature_key(modality: str) -> str:
    """The item attribute ``f'{modality}_feat'`` holding the features of ``modality``."""
    return f"{modality}_feat"


def _first_ids(ids: Tensor | np.ndarray) -> list[int]:
    return [int(i) for i in ids[:MAX_IDS_SHOWN].tolist()]


def _num_nodes(data: HeteroData, node_type: str) -> int:
    if node_type not in data.node_types or "num_nodes" not in data[node_type]:
        raise ValueError(
            f"data['{node_type}'].num_nodes is missing: set it to the number of {node_type}s"
        )
    num = data[node_type].num_nodes
    if isinstance(num, Tensor) and num.numel() == 1:
        num = int(num)
    return check_count(num, f"data['{node_type}'].num_nodes")


def _check_modalities(data: HeteroData, num_items: int, allow_no_modality: bool) -> None:
    if not hasattr(data, "modalities"):  # global store only (`in` also searches node stores)
        raise ValueError(
            "data.modalities is missing: set it to the sorted list of modality names "
            "(e.g. ['image', 'text']; [] for none)"
        )
    modalities = data.modalities
    if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
        raise ValueError(f"data.modalities must be a list of str (got {modalities!r})")
    if modalities != sorted(set(modalities)):
        raise ValueError(
            f"data.modalities must be sorted and free of duplicates (got {modalities})"
        )
    if not modalities and not allow_no_modality:
        raise ValueError(
            "data.modalities is empty: at least one modality is required "
            "(pass allow_no_modality=True to accept pure interaction data)"
        )
    item_store = data[ITEM]
    for m in modalities:
        key = feature_key(m)
        if key not in item_store:
            raise ValueError(f"modality '{m}': data['item'].{key} is missing")
        x = item_store[key]
        if not isinstance(x, Tensor):
            raise ValueError(
                f"modality '{m}': data['item'].{key} must be a torch.Tensor "
                f"(got {type(x).__name__})"
            )
        if not x.is_floating_point():
            raise ValueError(
                f"modality '{m}': data['item'].{key} must be a floating tensor (got {x.dtype})"
            )
        if x.dim() != 2 or x.size(0) != num_items:
            raise ValueError(
                f"modality '{m}': data['item'].{key} has shape {tuple(x.shape)}, expected "
                f"[{num_items}, d] (one row per item, {num_items} items)"
            )
        bad_rows = (~torch.isfinite(x)).any(dim=1)
        if bool(bad_rows.any()):
            rows = bad_rows.nonzero().view(-1)
            raise ValueError(
                f"modality '{m}': data['item'].{key} has NaN or infinite values in "
                f"{rows.numel()} of {num_items} rows (first rows: {_first_ids(rows)})"
            )


def _check_split(data: HeteroData, split: str, num_users: int, num_items: int) -> Tensor:
    edge_type = split_edge_type(split)
    name = f"data{edge_type}.edge_index"
    if edge_type not in data.edge_types or "edge_index" not in data[edge_type]:
        raise ValueError(f"split '{split}': {name} is missing")
    edge_index = data[edge_type].edge_index
    if not isinstance(edge_index, Tensor):
        raise ValueError(
            f"split '{split}': {name} must be a torch.Tensor (got {type(edge_index).__name__})"
        )
    if edge_index.dtype != torch.long:
        raise ValueError(f"split '{split}': {name} must have dtype torch.long "
                         f"(got {edge_index.dtype})")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(
            f"split '{split}': {name} must have shape [2, E] (got {tuple(edge_index.shape)})"
        )
    if edge_index.size(1) == 0:
        raise ValueError(f"split '{split}': {name} is empty (the split has no interaction)")
    for row, side, count in ((0, USER, num_users), (1, ITEM, num_items)):
        ids = edge_index[row]
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= count:
            raise ValueError(
                f"split '{split}': {side} ids must lie in [0, {count - 1}] "
                f"({count} {side}s) but range over [{lo}, {hi}] (min {lo}, max {hi})"
            )
    return edge_index


def validate_data(
    data: HeteroData,
    require_train_per_user: bool = True,
    allow_no_modality: bool = False,
) -> None:
    r"""Checks that :obj:`data` follows the data contract of :mod:`pyg_multirec` and raises
    a :class:`ValueError` naming the first problem found.

    Checked, in order:

    * ``data['user'].num_nodes`` and ``data['item'].num_nodes`` are set, positive integers;
    * ``data.modalities`` is a sorted list of distinct names (non-empty unless
      :obj:`allow_no_modality`), and for every modality ``m`` the item attribute
      ``data['item'][f'{m}_feat']`` is a floating 2-D tensor with ``num_items`` rows and no
      NaN / infinite entry (the message names the modality, the shape and the expected row
      count, or how many rows are not finite);
    * for every split ``s`` in ``('train', 'valid', 'test')``,
      ``data['user', s, 'item'].edge_index`` exists, is a non-empty ``torch.long`` tensor of
      shape ``[2, E_s]`` whose user row lies in ``[0, num_users)`` and item row in
      ``[0, num_items)`` (the message names the split, the side and the min / max id);
    * if :obj:`require_train_per_user`, every user has at least one training interaction
      (the message says how many users have none and lists the first ids).

    Args:
        data (HeteroData): the object to check.
        require_train_per_user (bool, optional): require at least one training interaction
            per user; pass :obj:`False` for cold-start data
            (see :func:`~pyg_multirec.datasets.cold_start_split`). (default: :obj:`True`)
        allow_no_modality (bool, optional): accept an empty ``data.modalities``.
            (default: :obj:`False`)

    Raises:
        TypeError: if :obj:`data` is not a :class:`~torch_geometric.data.HeteroData`.
        ValueError: if the contract is broken.
    """
    if not isinstance(data, HeteroData):
        raise TypeError(f"'data' must be a torch_geometric.data.HeteroData "
                        f"(got {type(data).__name__})")
    num_users = _num_nodes(data, USER)
    num_items = _num_nodes(data, ITEM)
    _check_modalities(data, num_items, allow_no_modality)
    edge_indices = {s: _check_split(data, s, num_users, num_items) for s in SPLITS}
    if require_train_per_user:
        degree = torch.bincount(edge_indices["train"][0], minlength=num_users)
        missing = (degree == 0).nonzero().view(-1)
        if missing.numel() > 0:
            raise ValueError(
                f"{missing.numel()} of {num_users} users have no training interaction "
                f"(first ids: {_first_ids(missing)}); pass require_train_per_user=False "
                f"for cold-start data"
            )


def check_contiguous_ids(ids: Tensor | np.ndarray | Sequence[int], name: str) -> int:
    r"""Checks that the ids :obj:`ids` are non-negative integers covering exactly
    ``0..n-1`` (every id from ``0`` to their maximum occurs at least once) and returns
    ``n``.

    Used by :class:`~pyg_multirec.datasets.MMRecDataset` on the user column of a ``.inter``
    file, where a gap would silently create users without any interaction.

    Args:
        ids (Tensor or numpy.ndarray or sequence of int): the ids (any order, repeats allowed).
        name (str): what the ids are, used in error messages (e.g. ``"userID in baby.inter"``).

    Raises:
        ValueError: if :obj:`ids` is empty, holds a negative id, or skips ids (the message
            gives how many ids are missing and the first of them).
    """
    ids = torch.as_tensor(ids).reshape(-1)
    if ids.numel() == 0:
        raise ValueError(f"{name}: no ids given")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{name}: ids must be integers (got {ids.dtype})")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0:
        raise ValueError(f"{name}: ids must be >= 0 (found min {lo})")
    present = torch.zeros(hi + 1, dtype=torch.bool)
    present[ids.long()] = True
    missing = (~present).nonzero().view(-1)
    if missing.numel() > 0:
        raise ValueError(
            f"{name}: ids must be contiguous 0..n-1 but {missing.numel()} ids in "
            f"0..{hi} are missing (first missing: {_first_ids(missing)})"
        )
    return hi + 1
