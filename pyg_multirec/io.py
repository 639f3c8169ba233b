r"""Reading interaction logs and item features, and writing them in the MMRec layout.

:func:`write_mmrec` turns a plain interaction log (user id, item id, optional timestamp, in
any id format) plus one feature matrix per modality into the folder that
:class:`~pyg_multirec.datasets.MMRecDataset` reads::

    out_dir/name/name.inter          userID  itemID  timestamp  x_label   (tab-separated)
    out_dir/name/{modality}_feat.npy float32 [num_items, d_m], row i = new item id i
    out_dir/name/u_id_mapping.csv    userID_orig  userID                 (tab-separated)
    out_dir/name/i_id_mapping.csv    asin  itemID                        (tab-separated)

:func:`read_interactions`, :func:`read_feature` and :func:`read_ids` read the files that
``pyg-multirec convert`` takes on the command line.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_feature", "read_ids", "read_interactions", "write_mmrec"]

#: Share of each user's interactions that goes to validation and to test (8:1:1 split).
HOLDOUT_FRACTION = 0.1
#: Users with fewer interactions than this keep all of them in the training split.
MIN_SPLIT_INTERACTIONS = 3
TRAIN_LABEL, VALID_LABEL, TEST_LABEL = 0, 1, 2
INTER_HEADER = ("userID", "itemID", "timestamp", "x_label")
USER_MAPPING_FILE, USER_MAPPING_HEADER = "u_id_mapping.csv", ("userID_orig", "userID")
ITEM_MAPPING_FILE, ITEM_MAPPING_HEADER = "i_id_mapping.csv", ("asin", "itemID")
FEATURE_SUFFIX = "_feat.npy"
#: Dataset name that :func:`pyg_multirec.datasets.load_dataset` reserves for generated data.
RESERVED_NAME = "synthetic"
MODALITY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
INT_PATTERN = re.compile(r"^[+-]?[0-9]+$")
#: File suffixes read as Parquet by :func:`read_interactions`.
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Delimiters tried when sniffing a delimited text file.
SNIFF_DELIMITERS = ",\t;|"
SNIFF_BYTES = 64 * 1024
#: Keys that ``scipy.sparse.save_npz`` writes; such an archive is read as one sparse matrix.
SCIPY_SPARSE_KEYS = frozenset({"data", "format", "shape"})
DEFAULT_TIME_COLUMN = "timestamp"
#: Zone assumed for ISO date-times written without one.
UTC_ZONE = dt.timezone(dt.timedelta(0))
MAX_LISTED = 5


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _listed(values: Sequence[Any] | np.ndarray) -> str:
    """The first few values, for error messages."""
    head = values[:MAX_LISTED]
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in head)
    return shown + (", ..." if len(values) > MAX_LISTED else "")


def _as_ids(values: Any, arg: str) -> np.ndarray:
    """A 1-D array of hashable, sortable ids (integers or strings)."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{arg} must be a 1-D array of ids ({err})") from err
    if array.ndim != 1:
        raise ValueError(f"{arg} must be 1-D, got shape {tuple(array.shape)}")
    if array.size == 0:
        raise ValueError(f"{arg} is empty")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError(f"{arg} contains NaN or infinite ids")
        if not (array == np.round(array)).all():
            raise ValueError(f"{arg} holds non-integer floats; ids must be integers or strings")
        array = array.astype(np.int64)
    elif array.dtype.kind == "b":
        raise TypeError(f"{arg} must hold integer or string ids, got booleans")
    elif array.dtype.kind == "O":
        kinds = {type(v) for v in array}
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in array):
            raise ValueError(f"{arg} contains missing ids (None or NaN)")
        if kinds <= {str}:
            array = array.astype(str)
        elif all(issubclass(k, (int, np.integer)) and not issubclass(k, bool) for k in kinds):
            array = array.astype(np.int64)
        else:
            names = sorted(k.__name__ for k in kinds)
            raise TypeError(f"{arg} mixes id types {names}; use all integers or all strings")
    elif array.dtype.kind not in "iuU":
        raise TypeError(f"{arg} must hold integer or string ids, got dtype {array.dtype}")
    if array.dtype.kind == "U":
        bad = [v for v in array if not v or "\t" in v or "\n" in v or "\r" in v]
        if bad:
            raise ValueError(f"{arg} has empty ids or ids containing tabs/newlines: {_listed(bad)}")
    return array


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
    labels: np.ndarray  # TRAIN_LABEL / VALID_LABEL / TEST_LABEL
    user_ids: np.ndarray  # original id of new user i
    item_ids: np.ndarray  # original id of new item i
    features: dict[str, np.ndarray] = field(default_factory=dict)  # float32, new item order
    feature_rules: dict[str, str] = field(default_factory=dict)  # how rows were matched
    num_input: int = 0
    num_duplicates: int = 0
    num_filtered: int = 0

    def split_counts(self) -> tuple[int, int, int]:
        counts = np.bincount(self.labels, minlength=TEST_LABEL + 1)
        return int(counts[TRAIN_LABEL]), int(counts[VALID_LABEL]), int(counts[TEST_LABEL])


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


def _split_labels(user: np.ndarray) -> np.ndarray:
    """Per-user 8:1:1 labels of interactions already sorted by (user, time)."""
    counts = np.bincount(user)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(user.shape[0]) - starts[user]
    num_train = np.empty_like(counts)
    num_valid = np.empty_like(counts)
    for n in np.unique(counts):  # a handful of distinct sizes; Python's round as documented
        n = int(n)
        if n < MIN_SPLIT_INTERACTIONS:
            n_valid = n_test = 0
        else:
            n_test = max(1, round(HOLDOUT_FRACTION * n))
            n_valid = max(1, round(HOLDOUT_FRACTION * n))
        num_train[counts == n] = n - n_valid - n_test
        num_valid[counts == n] = n_valid
    labels = np.full(user.shape[0], TEST_LABEL, dtype=np.int64)
    labels[position < num_train[user] + num_valid[user]] = VALID_LABEL
    labels[position < num_train[user]] = TRAIN_LABEL
    return labels


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
                f"(e.g. {_listed(kept[~found])}), so they have no {modality!r} features"
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
    users = _as_ids(users, "users")
    items = _as_ids(items, "items")
    if users.shape[0] != items.shape[0]:
        raise ValueError(
            f"users and items must have the same length, got {users.shape[0]} and {items.shape[0]}"
        )
    num_input = users.shape[0]
    times = None if timestamps is None else _as_timestamps(timestamps, num_input)
    if not isinstance(features, dict) or not features:
        raise ValueError("features must be a non-empty dict {modality: array [num_items, dim]}")
    arrays = {m: _as_feature(x, m) for m, x in sorted(features.items())}
    row_ids = None if item_ids is None else _as_ids(item_ids, "item_ids")
    if row_ids is not None and np.unique(row_ids).shape[0] != row_ids.shape[0]:
        raise ValueError("item_ids must not repeat an id")
    if isinstance(min_interactions, bool) or not isinstance(min_interactions, (int, np.integer)):
        raise TypeError(f"min_interactions must be an int, got {type(min_interactions).__name__}")
    if min_interactions < 0:
        raise ValueError(f"min_interactions must be >= 0, got {min_interactions}")

    all_users, user_code = np.unique(users, return_inverse=True)
    all_items, item_code = np.unique(items, return_inverse=True)

    # duplicates (user, item): keep the earliest (by time, ties and no time: file order)
    order = _dedup_order(times, num_input)
    pair = user_code.astype(np.int64) * all_items.shape[0] + item_code
    _, first = np.unique(pair[order], return_index=True)
    rows = np.sort(order[first])
    num_duplicates = num_input - rows.shape[0]

    keep = _k_core(user_code[rows], item_code[rows], int(min_interactions))
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
                f"{bad.shape[0]} items, e.g. original ids {_listed(bad)}"
            )
        out_features[modality] = feat

    return _Tables(
        users=new_user,
        items=new_item,
        timestamps=time_of_row,
        labels=_split_labels(new_user),
        user_ids=all_users[kept_user_codes],
        item_ids=all_items[kept_item_codes],
        features=out_features,
        feature_rules=rules,
        num_input=num_input,
        num_duplicates=num_duplicates,
        num_filtered=num_filtered,
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
    if name == RESERVED_NAME:
        raise ValueError(f"name {RESERVED_NAME!r} is reserved for the generated dataset")
    folder = Path(out_dir) / name
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a folder")
    inter = folder / f"{name}.inter"
    if inter.exists() and not overwrite:
        raise FileExistsError(f"{inter} exists; pass overwrite=True (--overwrite)")
    return folder


def _write(tables: _Tables, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"*{FEATURE_SUFFIX}"):  # an earlier conversion's modalities
        if stale.name[: -len(FEATURE_SUFFIX)] not in tables.features:
            stale.unlink()
    with (folder / f"{name}.inter").open("w", newline="", encoding="utf-8") as f:
        f.write("\t".join(INTER_HEADER) + "\n")
        stamps = [_format_number(t) for t in tables.timestamps.tolist()]
        rows = zip(tables.users.tolist(), tables.items.tolist(), stamps, tables.labels.tolist())
        f.writelines(f"{u}\t{i}\t{t}\t{x}\n" for u, i, t, x in rows)
    for modality, feat in tables.features.items():
        np.save(folder / f"{modality}{FEATURE_SUFFIX}", feat)
    for file, header, originals in (
        (USER_MAPPING_FILE, USER_MAPPING_HEADER, tables.user_ids),
        (ITEM_MAPPING_FILE, ITEM_MAPPING_HEADER, tables.item_ids),
    ):
        with (folder / file).open("w", newline="", encoding="utf-8") as f:
            f.write("\t".join(header) + "\n")
            for new, original in enumerate(originals.tolist()):
                f.write(f"{original}\t{new}\n")
    return folder


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
        from pyg_multirec.io import write_mmrec

        df = pd.read_csv('ratings.csv')                     # user, item, timestamp columns
        text = np.load('text_emb.npy')                      # one row per item, sorted item ids
        write_mmrec(df.user.values, df.item.values, {'text': text}, 'data', 'mydata',
                    timestamps=df.timestamp.values)
        # -> data/mydata/mydata.inter, data/mydata/text_feat.npy, ...
    """
    folder = _check_target(out_dir, name, overwrite)
    tables = _build(users, items, features, timestamps, item_ids, min_interactions)
    return _write(tables, folder, name)


# --------------------------------------------------------------------------------------
# readers used by ``pyg-multirec convert``
# --------------------------------------------------------------------------------------


def _parse_ids(values: list[str]) -> np.ndarray:
    """Integers when every id is a plain integer without leading zeros, else strings."""
    def plain_int(v: str) -> bool:
        digits = v.lstrip("+-")
        return bool(INT_PATTERN.match(v)) and (digits == "0" or not digits.startswith("0"))

    if all(plain_int(v) for v in values):
        return np.array([int(v) for v in values], dtype=np.int64)
    return np.array(values, dtype=str)


def _parse_times(values: list[str], column: str, path: Path) -> np.ndarray:
    try:
        if all(INT_PATTERN.match(v) for v in values):
            return np.array([int(v) for v in values], dtype=np.int64)
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(values), dtype=np.float64)
    for line, value in enumerate(values):
        try:
            stamp = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{path}: column {column!r} value {value!r} (data row {line + 1}) is neither a "
                "number nor an ISO date-time"
            ) from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC_ZONE)
        out[line] = stamp.timestamp()
    return out


def _column_index(header: list[str] | None, column: str | int, path: Path) -> int:
    if header is None:
        if isinstance(column, int) or (isinstance(column, str) and column.isdigit()):
            return int(column)
        raise ValueError(
            f"{path} has no header (header=False), so columns are 0-based positions, "
            f"got {column!r}"
        )
    if isinstance(column, str) and column in header:
        return header.index(column)
    raise ValueError(f"column {column!r} is not in {path}; its columns are {header}")


def _read_delimited(
    path: Path,
    columns: list[str | int],
    sep: str | None,
    header: bool,
) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        if sep is None:
            sample = f.read(SNIFF_BYTES)
            f.seek(0)
            try:
                sep = csv.Sniffer().sniff(sample, delimiters=SNIFF_DELIMITERS).delimiter
            except csv.Error:
                sep = "\t" if "\t" in sample.split("\n", 1)[0] else ","
        reader = csv.reader(f, delimiter=sep)
        names = next(reader, None) if header else None
        if header and names is None:
            raise ValueError(f"{path} is empty")
        if names is not None:
            names = [n.strip() for n in names]
        index = [_column_index(names, c, path) for c in columns]
        out: list[list[str]] = [[] for _ in columns]
        for line, row in enumerate(reader, start=2 if header else 1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) <= max(index):
                raise ValueError(
                    f"{path}:{line}: expected at least {max(index) + 1} fields, got {len(row)} "
                    f"(delimiter {sep!r})"
                )
            for slot, i in enumerate(index):
                value = row[i].strip()
                if not value:
                    raise ValueError(f"{path}:{line}: empty value in column {columns[slot]!r}")
                out[slot].append(value)
    if not out[0]:
        raise ValueError(f"{path} has no interactions")
    return out


def _read_parquet(path: Path, columns: list[str]) -> list[np.ndarray]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"reading {path.name} needs pyarrow: pip install pyarrow (or convert it to CSV)"
        ) from None
    names = pq.read_schema(path).names
    for column in columns:
        if column not in names:
            raise ValueError(f"column {column!r} is not in {path}; its columns are {names}")
    table = pq.read_table(path, columns=columns)
    out = []
    for column in columns:
        chunked = table.column(column)
        if chunked.null_count:
            raise ValueError(f"{path}: column {column!r} has {chunked.null_count} missing values")
        out.append(chunked.to_numpy(zero_copy_only=False))
    if out[0].shape[0] == 0:
        raise ValueError(f"{path} has no interactions")
    return out


def read_interactions(
    path: str | Path,
    user_col: str | int = "user",
    item_col: str | int = "item",
    time_col: str | int | None = None,
    *,
    sep: str | None = None,
    header: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Reads ``(users, items, timestamps)`` from a delimited text file or a Parquet file.

    Delimited files (``.csv``, ``.tsv``, ...) are read with the standard library; the
    delimiter is sniffed unless ``sep`` is given. Ids that are all plain integers (no
    leading zeros) are returned as ``int64``, otherwise as strings. Timestamps may be
    numbers or ISO-8601 date-times (read as Unix seconds, UTC when no zone is given).
    Parquet (``.parquet``, ``.pq``) needs ``pyarrow``.

    Args:
        path: the interaction file.
        user_col, item_col: column names (or 0-based positions when ``header=False``).
        time_col: timestamp column; ``None`` uses a column named ``timestamp`` if there is
            one and otherwise returns ``None`` (input order then stands for time).
        sep: delimiter of a text file (default: sniffed among ``, TAB ; |``).
        header: whether a text file's first line names the columns.

    Returns:
        ``users``, ``items`` (1-D arrays) and ``timestamps`` (1-D array or ``None``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"interaction file {path} does not exist")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        if not header:
            raise ValueError("header=False applies to text files only, not Parquet")
        import_names = [str(user_col), str(item_col)]
        if time_col is None:
            try:
                import pyarrow.parquet as pq

                if DEFAULT_TIME_COLUMN in pq.read_schema(path).names:
                    time_col = DEFAULT_TIME_COLUMN
            except ImportError:
                pass  # _read_parquet raises the explanatory error
        if time_col is not None:
            import_names.append(str(time_col))
        arrays = _read_parquet(path, import_names)
        users, items = _as_ids(arrays[0], "users"), _as_ids(arrays[1], "items")
        return users, items, arrays[2] if len(arrays) > 2 else None

    columns: list[str | int] = [user_col, item_col]
    if time_col is None and header:
        with path.open(newline="", encoding="utf-8-sig") as f:
            first = f.readline()
        delims = [sep] if sep else list(SNIFF_DELIMITERS)
        if any(DEFAULT_TIME_COLUMN in [c.strip() for c in first.split(d)] for d in delims):
            time_col = DEFAULT_TIME_COLUMN
    if time_col is not None:
        columns.append(time_col)
    values = _read_delimited(path, columns, sep, header)
    users, items = _parse_ids(values[0]), _parse_ids(values[1])
    times = _parse_times(values[2], str(time_col), path) if time_col is not None else None
    return users, items, times


def read_feature(path: str | Path, key: str | None = None) -> np.ndarray:
    """Reads one feature matrix from ``.npy`` or ``.npz``.

    An ``.npz`` archive must hold a single array, or ``key`` must name one; an archive
    written by ``scipy.sparse.save_npz`` is read as that sparse matrix, made dense.

    Args:
        path: the ``.npy`` or ``.npz`` file.
        key: the array to take from an ``.npz`` archive.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if key is not None:
            raise ValueError(f"{path} is an .npy file; a key (':{key}') applies to .npz only")
        return np.load(path, allow_pickle=False)
    if suffix != ".npz":
        raise ValueError(f"feature file {path} must be .npy or .npz")
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.keys())
        if key is None and SCIPY_SPARSE_KEYS <= set(keys):
            import scipy.sparse

            return scipy.sparse.load_npz(path).toarray()
        if key is None:
            if len(keys) != 1:
                raise ValueError(
                    f"{path} holds {len(keys)} arrays {keys}; name one as FILE.npz:KEY"
                )
            key = keys[0]
        if key not in keys:
            raise ValueError(f"{path} has no array {key!r}; it holds {keys}")
        return archive[key]


def read_ids(path: str | Path) -> np.ndarray:
    """Reads item ids, one per feature row: ``.npy`` or a text file with one id per line.

    Text ids follow the same rule as :func:`read_interactions` (integers when all are
    plain integers, otherwise strings); blank lines are skipped; there is no header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"item id file {path} does not exist")
    if path.suffix.lower() == ".npy":
        return _as_ids(np.load(path, allow_pickle=False), "item_ids")
    with path.open(encoding="utf-8-sig") as f:
        values = [line.strip() for line in f if line.strip()]
    if not values:
        raise ValueError(f"item id file {path} is empty")
    return _parse_ids(values)
