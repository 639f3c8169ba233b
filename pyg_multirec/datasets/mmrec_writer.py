r"""Writing an interaction log and item features as an MMRec dataset folder.

:func:`write_mmrec` turns a plain interaction log (user id, item id, optional timestamp, in
any id format) plus one feature matrix per modality into the folder that
:class:`~pyg_multirec.datasets.MMRecDataset` reads (layout: :mod:`~pyg_multirec.datasets.layout`);
:func:`convert_files` does the same from files and returns what it did
(:class:`MMRecSummary`), which ``pyg-multirec convert`` prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from pyg_multirec._checks import check_int
from pyg_multirec.datasets._arrays import as_ids, listed
from pyg_multirec.datasets.layout import (
    FEATURE_SUFFIX,
    INTER_HEADER,
    ITEM_MAPPING_FILE,
    ITEM_MAPPING_HEADER,
    SPLIT_LABELS,
    USER_MAPPING_FILE,
    USER_MAPPING_HEADER,
    feature_file,
    inter_file,
    modality_of,
)
from pyg_multirec.datasets.readers import read_feature, read_ids, read_interactions
from pyg_multirec.datasets.splits import holdout_labels
from pyg_multirec.datasets.synthetic import SYNTHETIC

__all__ = ["MMRecSummary", "convert_files", "write_mmrec"]

MODALITY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Default id columns of :func:`convert_files`: names with a header line, else positions.
DEFAULT_COLUMNS = {True: ("user", "item"), False: (0, 1)}


@dataclass(frozen=True)
class MMRecSummary:
    """What :func:`convert_files` wrote (``pyg-multirec convert`` prints it):

    * ``folder``: the dataset folder ``out_dir/name``;
    * ``num_input``: interactions read; ``num_duplicates``: repeated ``(user, item)`` pairs
      dropped (the earliest is kept); ``num_filtered``: interactions dropped by
      ``min_interactions``;
    * ``num_users``, ``num_items``: users and items written (new ids ``0..n-1``);
    * ``split_counts``: interactions per split, ``{'train': ..., 'valid': ..., 'test': ...}``;
    * ``feature_shapes``: ``{modality: (num_items, dim)}`` of the written features;
      ``feature_rules``: ``{modality: how feature rows were matched to items}``;
    * ``has_timestamps``: whether interactions were ordered by timestamps (else input order).
    """

    folder: Path
    num_input: int
    num_duplicates: int
    num_filtered: int
    num_users: int
    num_items: int
    split_counts: dict[str, int]
    feature_shapes: dict[str, tuple[int, ...]]
    feature_rules: dict[str, str]
    has_timestamps: bool

    @property
    def num_interactions(self) -> int:
        """Interactions written (all splits)."""
        return sum(self.split_counts.values())


def _as_timestamps(values: Any, num_rows: int) -> np.ndarray:
    """Numeric timestamps (int64 or float64); datetimes become Unix seconds."""
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != num_rows:
        raise ValueError(
            f"timestamps must be 1-D with one value per interaction ({num_rows}), "
            f"got shape {tuple(array.shape)}"
        )
    if array.dtype.kind == "M":
        if np.isnat(array).any():
            raise ValueError("timestamps contain NaT (missing times)")
        return array.astype("datetime64[s]").astype(np.int64)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    if array.dtype.kind in "fO":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"timestamps must be numbers or datetimes ({err})") from err
        if not np.isfinite(array).all():
            raise ValueError("timestamps contain NaN or infinite values")
        return array
    raise TypeError(f"timestamps must be numbers or datetimes, got dtype {array.dtype}")


def _as_feature(values: Any, modality: str) -> np.ndarray:
    if not isinstance(modality, str) or not MODALITY_PATTERN.match(modality):
        raise ValueError(
            f"modality name {modality!r} must start with a letter and hold only letters, "
            "digits and '_' (it becomes the file name '{modality}_feat.npy')"
        )
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(
            f"features[{modality!r}] must be 2-D [num_items, dim], got shape {tuple(array.shape)}"
        )
    if array.shape[1] == 0:
        raise ValueError(f"features[{modality!r}] has no columns")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"features[{modality!r}] must be numeric, got dtype {array.dtype}")
    return array


def _same_kind(ids: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``ids`` as strings when exactly one of the two arrays holds strings."""
    if (ids.dtype.kind == "U") != (reference.dtype.kind == "U"):
        return ids.astype(str)
    return ids


@dataclass
class _Tables:
    """Everything :func:`write_mmrec` writes, before it is written."""

    users: np.ndarray  # new user id per interaction, sorted by user then time
    items: np.ndarray  # new item id per interaction
    timestamps: np.ndarray
    labels: np.ndarray  # x_label: SPLIT_LABELS values
    user_ids: np.ndarray  # original id of new user i
    item_ids: np.ndarray  # original id of new item i
    features: dict[str, np.ndarray] = field(default_factory=dict)  # float32, new item order
    feature_rules: dict[str, str] = field(default_factory=dict)  # how rows were matched
    num_input: int = 0
    num_duplicates: int = 0
    num_filtered: int = 0
    has_timestamps: bool = False

    def summary(self, folder: Path) -> MMRecSummary:
        counts = np.bincount(self.labels, minlength=max(SPLIT_LABELS.values()) + 1)
        return MMRecSummary(
            folder=folder,
            num_input=self.num_input,
            num_duplicates=self.num_duplicates,
            num_filtered=self.num_filtered,
            num_users=int(self.user_ids.shape[0]),
            num_items=int(self.item_ids.shape[0]),
            split_counts={s: int(counts[label]) for s, label in SPLIT_LABELS.items()},
            feature_shapes={m: tuple(x.shape) for m, x in self.features.items()},
            feature_rules=dict(self.feature_rules),
            has_timestamps=self.has_timestamps,
        )


def _dedup_order(timestamps: np.ndarray | None, num_rows: int) -> np.ndarray:
    """Row order in which 'earliest' is decided: by time (stable), else file order."""
    if timestamps is None:
        return np.arange(num_rows)
    return np.argsort(timestamps, kind="stable")


def _k_core(user_code: np.ndarray, item_code: np.ndarray, k: int) -> np.ndarray:
    """Mask of interactions left after repeatedly dropping users/items with < k of them."""
    keep = np.ones(user_code.shape[0], dtype=bool)
    if k <= 1:
        return keep
    while True:
        user_deg = np.bincount(user_code[keep], minlength=int(user_code.max()) + 1)
        item_deg = np.bincount(item_code[keep], minlength=int(item_code.max()) + 1)
        new_keep = keep & (user_deg[user_code] >= k) & (item_deg[item_code] >= k)
        if new_keep.sum() == keep.sum():
            return keep
        keep = new_keep


def _feature_rows(
    modality: str,
    num_rows: int,
    all_items: np.ndarray,
    kept_codes: np.ndarray,
    row_ids: np.ndarray | None,
) -> tuple[np.ndarray, str]:
    """Index of the feature row of every kept item (in new-id order) and the rule used."""
    kept_items = all_items[kept_codes]
    if row_ids is not None:
        if row_ids.shape[0] != num_rows:
            raise ValueError(
                f"features[{modality!r}] has {num_rows} rows but item_ids lists "
                f"{row_ids.shape[0]} ids; item_ids must name the item of every row"
            )
        lookup = _same_kind(row_ids, kept_items)
        kept = _same_kind(kept_items, lookup)
        order = np.argsort(lookup, kind="stable")
        pos = np.searchsorted(lookup[order], kept)
        pos = np.minimum(pos, num_rows - 1)
        found = lookup[order][pos] == kept
        if not found.all():
            raise ValueError(
                f"{int((~found).sum())} interacted items are not in item_ids "
                f"(e.g. {listed(kept[~found])}), so they have no {modality!r} features"
            )
        return order[pos], "rows matched through item_ids"
    if num_rows == all_items.shape[0]:
        return kept_codes, "row r = r-th smallest original item id"
    if num_rows == kept_codes.shape[0]:
        return np.arange(num_rows), "row r = r-th smallest original id of the kept items"
    if all_items.dtype.kind in "iu" and all_items.min() >= 0 and num_rows > all_items.max():
        return kept_items.astype(np.int64), "row r = original item id r"
    hint = (
        f"; or, as the item ids are integers, at least {int(all_items.max()) + 1} rows "
        "indexed by the id itself"
        if all_items.dtype.kind in "iu" and all_items.min() >= 0
        else ""
    )
    raise ValueError(
        f"features[{modality!r}] has {num_rows} rows, but the interactions have "
        f"{all_items.shape[0]} distinct items ({kept_codes.shape[0]} after filtering); expected "
        f"one row per distinct item in sorted id order{hint}, or pass item_ids (--item-ids) "
        "naming the item of every row"
    )


def _build(
    users: Any,
    items: Any,
    features: dict[str, Any],
    timestamps: Any = None,
    item_ids: Any = None,
    min_interactions: int = 0,
) -> _Tables:
    users = as_ids(users, "users")
    items = as_ids(items, "items")
    if users.shape[0] != items.shape[0]:
        raise ValueError(
            f"users and items must have the same length, got {users.shape[0]} and {items.shape[0]}"
        )
    num_input = users.shape[0]
    times = None if timestamps is None else _as_timestamps(timestamps, num_input)
    if not isinstance(features, dict) or not features:
        raise ValueError("features must be a non-empty dict {modality: array [num_items, dim]}")
    arrays = {m: _as_feature(x, m) for m, x in sorted(features.items())}
    row_ids = None if item_ids is None else as_ids(item_ids, "item_ids")
    if row_ids is not None and np.unique(row_ids).shape[0] != row_ids.shape[0]:
        raise ValueError("item_ids must not repeat an id")
    min_interactions = check_int(min_interactions, "min_interactions", minimum=0)

    all_users, user_code = np.unique(users, return_inverse=True)
    all_items, item_code = np.unique(items, return_inverse=True)

    # duplicates (user, item): keep the earliest (by time, ties and no time: file order)
    order = _dedup_order(times, num_input)
    pair = user_code.astype(np.int64) * all_items.shape[0] + item_code
    _, first = np.unique(pair[order], return_index=True)
    rows = np.sort(order[first])
    num_duplicates = num_input - rows.shape[0]

    keep = _k_core(user_code[rows], item_code[rows], min_interactions)
    num_filtered = int((~keep).sum())
    rows = rows[keep]
    if rows.size == 0:
        raise ValueError(
            f"no interaction is left after keeping users and items with at least "
            f"{min_interactions} interactions"
        )

    kept_user_codes, new_user = np.unique(user_code[rows], return_inverse=True)
    kept_item_codes, new_item = np.unique(item_code[rows], return_inverse=True)
    time_of_row = times[rows] if times is not None else rows  # file order stands in for time
    sort = np.lexsort((new_item, time_of_row, new_user))  # user, then time, then item id
    new_user, new_item, time_of_row = new_user[sort], new_item[sort], time_of_row[sort]

    out_features, rules = {}, {}
    for modality, array in arrays.items():
        index, rules[modality] = _feature_rows(
            modality, array.shape[0], all_items, kept_item_codes, row_ids
        )
        feat = np.ascontiguousarray(array[index], dtype=np.float32)
        if not np.isfinite(feat).all():
            bad = all_items[kept_item_codes][~np.isfinite(feat).all(axis=1)]
            raise ValueError(
                f"features[{modality!r}] has NaN or infinite values (as float32) for "
                f"{bad.shape[0]} items, e.g. original ids {listed(bad)}"
            )
        out_features[modality] = feat

    return _Tables(
        users=new_user,
        items=new_item,
        timestamps=time_of_row,
        labels=holdout_labels(torch.from_numpy(new_user), kept_user_codes.shape[0]).numpy(),
        user_ids=all_users[kept_user_codes],
        item_ids=all_items[kept_item_codes],
        features=out_features,
        feature_rules=rules,
        num_input=num_input,
        num_duplicates=num_duplicates,
        num_filtered=num_filtered,
        has_timestamps=times is not None,
    )


def _format_number(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def _check_target(out_dir: str | Path, name: str, overwrite: bool) -> Path:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"name {name!r} must be a plain folder name (letters, digits, '.', '_', '-')"
        )
    if name == SYNTHETIC:
        raise ValueError(f"name {SYNTHETIC!r} is reserved for the generated dataset")
    folder = Path(out_dir) / name
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a folder")
    inter = folder / inter_file(name)
    if inter.exists() and not overwrite:
        raise FileExistsError(f"{inter} exists; pass overwrite=True (--overwrite)")
    return folder


def _write(tables: _Tables, folder: Path, name: str) -> MMRecSummary:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"*{FEATURE_SUFFIX}"):  # an earlier conversion's modalities
        if modality_of(stale.name) not in tables.features:
            stale.unlink()
    with (folder / inter_file(name)).open("w", newline="", encoding="utf-8") as f:
        f.write("\t".join(INTER_HEADER) + "\n")
        stamps = [_format_number(t) for t in tables.timestamps.tolist()]
        rows = zip(tables.users.tolist(), tables.items.tolist(), stamps, tables.labels.tolist())
        f.writelines(f"{u}\t{i}\t{t}\t{x}\n" for u, i, t, x in rows)
    for modality, feat in tables.features.items():
        np.save(folder / feature_file(modality), feat)
    for file, header, originals in (
        (USER_MAPPING_FILE, USER_MAPPING_HEADER, tables.user_ids),
        (ITEM_MAPPING_FILE, ITEM_MAPPING_HEADER, tables.item_ids),
    ):
        with (folder / file).open("w", newline="", encoding="utf-8") as f:
            f.write("\t".join(header) + "\n")
            for new, original in enumerate(originals.tolist()):
                f.write(f"{original}\t{new}\n")
    return tables.summary(folder)


def write_mmrec(
    users: Any,
    items: Any,
    features: dict[str, Any],
    out_dir: str | Path,
    name: str,
    timestamps: Any = None,
    *,
    item_ids: Any = None,
    min_interactions: int = 0,
    overwrite: bool = False,
) -> Path:
    r"""Writes an interaction log and item features as an MMRec dataset folder.

    The result, ``out_dir/name/``, is read by
    :class:`~pyg_multirec.datasets.MMRecDataset` (``MMRecDataset(out_dir, name)``) and by
    :func:`~pyg_multirec.datasets.load_dataset` (``load_dataset(name, out_dir)``).

    Processing, in this order:

    1. **Duplicates**: of repeated ``(user, item)`` pairs only the earliest is kept (by
       ``timestamps``; ties and logs without timestamps: the first in input order).
    2. **Filtering** (``min_interactions > 1``): users and items with fewer interactions are
       dropped repeatedly until none is left (a ``k``-core).
    3. **Re-indexing**: users and items become ``0..n-1`` in sorted order of their original
       ids (integers numerically, strings lexicographically).
    4. **Split**, per user: interactions sorted by time (ties by new item id; without
       timestamps by input order); with :math:`n` of them,
       :math:`n_{test} = n_{valid} = \max(1, \mathrm{round}(0.1\,n))` (Python's ``round``,
       halves to even) and the first :math:`n - n_{valid} - n_{test}` go to train
       (``x_label`` 0), the next :math:`n_{valid}` to validation (1), the last
       :math:`n_{test}` to test (2). Users with fewer than 3 interactions keep all of them in
       train.

    **Which feature row belongs to which item.** Row ``r`` of every feature array belongs to

    * ``item_ids[r]`` when ``item_ids`` is given (it must list one id per row; rows of
      items nobody interacted with are ignored);
    * otherwise, when the array has one row per distinct item of the log: the ``r``-th
      smallest original item id;
    * otherwise, when it has one row per item *kept* after filtering: the ``r``-th smallest
      kept id (rows already in the output order);
    * otherwise, for non-negative integer ids and more rows than the largest id: item id
      ``r`` itself (a catalogue matrix indexed by id).

    Any other row count is an error. Output rows follow the new item ids, as float32.

    The ``timestamp`` column holds the given times (datetimes as Unix seconds) or, without
    timestamps, each interaction's 0-based row number in the input. The mapping files are
    tab-separated ``userID_orig  userID`` and ``asin  itemID`` (original id, new id).

    Args:
        users: 1-D array of original user ids (integers or strings), one per interaction;
            from pandas, ``df['user'].values``.
        items: 1-D array of original item ids, one per interaction.
        features: ``{modality: array [num_rows, dim]}``; a modality name becomes the file
            ``{modality}_feat.npy`` and must start with a letter (letters, digits, ``_``).
        out_dir: folder that will hold the dataset folder.
        name: dataset name: the folder ``out_dir/name`` and the file ``name.inter``.
        timestamps: optional 1-D numbers or ``datetime64`` values, one per interaction.
        item_ids: optional original item id of every feature row.
        min_interactions: minimum interactions per user and per item (``0``: no filtering).
        overwrite: replace an existing dataset of the same name.

    Returns:
        The dataset folder ``out_dir/name``.

    Raises:
        ValueError: mismatched lengths, NaN/infinite features or times, a feature row count
            that matches none of the rules above, items missing from ``item_ids``, an
            invalid ``name`` or modality name, or nothing left after filtering.
        TypeError: ids that are neither integers nor strings, non-numeric features.
        FileExistsError: the dataset exists and ``overwrite`` is ``False``.

    Example::

        import numpy as np, pandas as pd
        from pyg_multirec.datasets import write_mmrec

        df = pd.read_csv('ratings.csv')                     # user, item, timestamp columns
        text = np.load('text_emb.npy')                      # one row per item, sorted item ids
        write_mmrec(df.user.values, df.item.values, {'text': text}, 'data', 'mydata',
                    timestamps=df.timestamp.values)
        # -> data/mydata/mydata.inter, data/mydata/text_feat.npy, ...
    """
    folder = _check_target(out_dir, name, overwrite)
    tables = _build(users, items, features, timestamps, item_ids, min_interactions)
    return _write(tables, folder, name).folder


def convert_files(
    interactions: Union[str, Path],
    features: dict[str, Union[str, Path, tuple[Union[str, Path], Optional[str]]]],
    out_dir: Union[str, Path],
    name: str,
    *,
    user_col: Union[str, int, None] = None,
    item_col: Union[str, int, None] = None,
    time_col: Union[str, int, None] = None,
    sep: Optional[str] = None,
    header: bool = True,
    item_ids: Union[str, Path, None] = None,
    min_interactions: int = 0,
    overwrite: bool = False,
) -> MMRecSummary:
    """Reads an interaction file and one feature file per modality, and writes them as the
    MMRec dataset ``out_dir/name`` with :func:`write_mmrec` (same processing and rules).

    Args:
        interactions: interaction log, read by
            :func:`~pyg_multirec.datasets.read_interactions`.
        features: ``{modality: path}`` or ``{modality: (path, key)}`` (``key`` names one
            array of an ``.npz`` archive), read by :func:`~pyg_multirec.datasets.read_feature`.
        out_dir, name: the dataset folder ``out_dir/name``.
        user_col, item_col: id columns (default ``'user'``/``'item'``, or positions 0 and 1
            when ``header=False``).
        time_col: timestamp column (default: ``'timestamp'`` if present, else input order);
            ``''`` ignores any timestamp.
        sep, header: delimiter and header line of a text file.
        item_ids: file naming the item of every feature row, read by
            :func:`~pyg_multirec.datasets.read_ids`.
        min_interactions, overwrite: as in :func:`write_mmrec`.

    Returns:
        An :class:`MMRecSummary` of what was read, dropped and written.
    """
    arrays = {}
    for modality, spec in features.items():
        path, key = spec if isinstance(spec, tuple) else (spec, None)
        arrays[modality] = read_feature(path, key)
    folder = _check_target(out_dir, name, overwrite)  # before reading a large log
    default_user, default_item = DEFAULT_COLUMNS[bool(header)]
    ignore_time = time_col == ""
    users, items, times = read_interactions(
        interactions,
        default_user if user_col is None else user_col,
        default_item if item_col is None else item_col,
        None if ignore_time else time_col,
        sep=sep,
        header=header,
    )
    row_ids = None if item_ids is None else read_ids(item_ids)
    tables = _build(
        users, items, arrays, None if ignore_time else times, row_ids, min_interactions
    )
    return _write(tables, folder, name)
