"""Loader for datasets in the folder layout of MMRec (https://github.com/enoche/MMRec)."""

from __future__ import annotations

import hashlib
import os
import os.path as osp
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData, InMemoryDataset

from pyg_multirec.datasets.layout import (
    FEATURE_SUFFIX,
    ITEM_COLUMN,
    LABEL_COLUMN,
    SPLIT_LABELS,
    USER_COLUMN,
    inter_file,
    modality_of,
)
from pyg_multirec.datasets.validation import (
    ITEM,
    SPLITS,
    USER,
    check_contiguous_ids,
    feature_key,
    split_edge_type,
    validate_data,
)

CACHE_ENV = "PYG_MULTIREC_CACHE"
PROCESSED_DIR_NAME = "processed"
# Bump when the processed format changes, so that stale caches are not loaded.
PROCESSED_VERSION = 1
# Hex digits of the hashes used in cache folder and processed file names.
HASH_CHARS = 12
# Write permission bits (owner, group, others) of a folder's mode.
ANY_WRITE_BITS = 0o222

LAYOUT_HELP = (
    "MMRec layout: ROOT/NAME/NAME.inter, tab-separated with a header holding at least the "
    "columns userID, itemID and x_label (0 train, 1 valid, 2 test), plus one "
    "ROOT/NAME/<modality>_feat.npy per modality, a [num_items, d] array whose row i is item i"
)


def _default_cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pyg_multirec"


def _is_writable(folder: Path) -> bool:
    """Whether ``folder`` may be written to. A folder without any write permission bit counts
    as read-only even for a user (root) whom the operating system would let write to it."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return bool(mode & ANY_WRITE_BITS) and os.access(folder, os.W_OK | os.X_OK)


def _parse_ids(column: np.ndarray, column_name: str, path: Path) -> np.ndarray:
    if not np.all(np.isfinite(column)) or not np.all(column == np.round(column)):
        bad = np.flatnonzero(~np.isfinite(column) | (column != np.round(column)))
        raise ValueError(
            f"{path}: column {column_name} must hold integers; {bad.size} rows do not "
            f"(first data rows: {bad[:5].tolist()}, values: {column[bad[:5]].tolist()})"
        )
    if column.size and column.min() < 0:
        raise ValueError(f"{path}: column {column_name} must be >= 0 (found {column.min():g})")
    return column.astype(np.int64)


def read_inter(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads the ``userID``, ``itemID`` and ``x_label`` columns of an MMRec ``.inter`` file
    (tab-separated, one header line; other columns are ignored) as three int64 arrays."""
    with open(path, encoding="utf-8-sig") as f:  # -sig: tolerate a byte-order mark
        header = f.readline().rstrip("\r\n").split("\t")
    header = [h.strip() for h in header]
    missing = [c for c in (USER_COLUMN, ITEM_COLUMN, LABEL_COLUMN) if c not in header]
    if missing:
        raise ValueError(
            f"{path}: the header line must name the columns {USER_COLUMN}, {ITEM_COLUMN} and "
            f"{LABEL_COLUMN} (tab-separated); missing {missing}, found {header}"
        )
    columns = [header.index(c) for c in (USER_COLUMN, ITEM_COLUMN, LABEL_COLUMN)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numpy warns on an empty body
            table = np.loadtxt(
                path,
                delimiter="\t",
                skiprows=1,
                usecols=columns,
                dtype=np.float64,
                ndmin=2,
                comments=None,
                encoding="utf-8",
            )
    except ValueError as e:
        raise ValueError(f"{path}: could not parse the .inter file as numbers: {e}") from e
    if table.shape[0] == 0:
        raise ValueError(f"{path}: the .inter file has a header but no interaction row")
    users = _parse_ids(table[:, 0], USER_COLUMN, path)
    items = _parse_ids(table[:, 1], ITEM_COLUMN, path)
    allowed = sorted(SPLIT_LABELS.values())
    known = np.isin(table[:, 2], allowed)
    if not known.all():
        values = np.unique(table[~known, 2])
        raise ValueError(
            f"{path}: column {LABEL_COLUMN} must hold only {allowed} (0 train, 1 valid, "
            f"2 test); {int((~known).sum())} rows hold other values, e.g. {values[:5].tolist()}"
        )
    labels = table[:, 2].astype(np.int64)
    return users, items, labels


class MMRecDataset(InMemoryDataset):
    r"""A multimodal recommendation dataset stored in the folder layout of the
    `MMRec <https://github.com/enoche/MMRec>`_ toolbox, in which the Amazon Baby / Sports /
    Clothing datasets evaluated by SEA (`"Separate Learning for Multimedia Recommendation"`)
    and MICRO (`"Latent Structure Mining with Contrastive Modality Fusion for Multimedia
    Recommendation"`, Zhang et al.) are distributed; such folders load unchanged.

    Expected files in ``root/name/`` (read unchanged; this folder is also :obj:`raw_dir`):

    * ``{name}.inter``: tab-separated, one header line naming at least the columns
      ``userID``, ``itemID`` and ``x_label`` (other columns such as ``rating`` or
      ``timestamp`` are ignored); one row per interaction; ``x_label`` is ``0`` for train,
      ``1`` for validation and ``2`` for test;
    * ``<modality>_feat.npy``, one or more: a ``[num_items, d]`` array whose row ``i``
      describes item ``i``; every such file is one modality, named by the part before
      ``_feat.npy`` (``image_feat.npy`` -> ``'image'``); modalities are sorted by name.

    Counts: ``num_items`` is the row count of the feature files (all must agree; items
    without any interaction are allowed, item ids beyond the feature rows raise);
    ``num_users`` is the largest ``userID`` plus one, and user ids must be contiguous.

    The single element ``dataset[0]`` is a :class:`~torch_geometric.data.HeteroData` with

    * ``data['user'].num_nodes``, ``data['item'].num_nodes``;
    * ``data['item'][f'{m}_feat']``: float32 ``[num_items, d_m]`` for each modality ``m``;
    * ``data.modalities``: sorted list of modality names;
    * ``data['user', s, 'item'].edge_index``: long ``[2, E_s]`` (row 0 users, row 1 items)
      for ``s`` in ``('train', 'valid', 'test')``, rows in file order;

    checked by :func:`~pyg_multirec.datasets.validate_data` when processed.

    Processed files go to ``root/name/processed/``. If ``root/name`` is read-only (no write
    permission bit, or not writable by the current user) they go to a cache folder
    instead: ``$PYG_MULTIREC_CACHE/<name>-<hash>`` if that variable is set, else
    ``$XDG_CACHE_HOME/pyg_multirec/<name>-<hash>`` (default ``~/.cache/pyg_multirec/...``),
    where ``<hash>`` identifies the absolute path of ``root/name``. The processed file name
    holds a fingerprint of the raw files (names, sizes, modification times), so editing a raw
    file triggers re-processing.

    Args:
        root (str or Path): folder holding one sub-folder per dataset.
        name (str): the dataset's folder and file stem (e.g. ``'baby'``, ``'ml100k'``).
        transform (callable, optional): applied to the data object on every access.
            (default: :obj:`None`)
        pre_transform (callable, optional): applied once before saving the processed file.
            (default: :obj:`None`)
        force_reload (bool, optional): re-process even if a processed file exists.
            (default: :obj:`False`)
        allow_no_modality (bool, optional): accept a folder without any ``*_feat.npy``
            (pure interaction data, for models such as MF and LightGCN): then
            ``data.modalities`` is empty and ``num_items`` is the largest ``itemID`` plus
            one. (default: :obj:`False`)

    Raises:
        FileNotFoundError: if ``root/name/{name}.inter`` or (unless
            :obj:`allow_no_modality`) every ``*_feat.npy`` is missing (the message says
            which files to place where).
        ValueError: on a malformed ``.inter`` header, non-integer ids, ``x_label`` values
            other than 0/1/2, non-contiguous user ids, feature files with differing or too
            few rows, or any violation of the data contract (NaN features, empty split, ...).
    """

    def __init__(
        self,
        root: str | Path,
        name: str,
        transform: Callable | None = None,
        pre_transform: Callable | None = None,
        force_reload: bool = False,
        allow_no_modality: bool = False,
    ) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"'root' must be a str or Path (got {type(root).__name__})")
        if not isinstance(name, str) or not name or name != osp.basename(name):
            raise ValueError(f"'name' must be a plain folder name such as 'baby' (got {name!r})")
        self.name = name
        self.allow_no_modality = bool(allow_no_modality)
        self._folder = Path(root).expanduser().resolve() / name
        self._check_raw_files()
        super().__init__(str(self._folder.parent), transform, pre_transform,
                         force_reload=force_reload)
        self.load(self.processed_paths[0], data_cls=HeteroData)

    def _feature_files(self) -> list[str]:
        if not self._folder.is_dir():
            return []
        return sorted(
            p.name for p in self._folder.iterdir() if modality_of(p.name) and p.is_file()
        )

    def _check_raw_files(self) -> None:
        inter = self._folder / inter_file(self.name)
        missing = []
        if not inter.is_file():
            missing.append(str(inter))
        if not self._feature_files() and not self.allow_no_modality:
            missing.append(f"at least one {self._folder}/*{FEATURE_SUFFIX}")
        if missing:
            state = "does not exist" if not self._folder.is_dir() else "exists"
            raise FileNotFoundError(
                f"dataset '{self.name}': expected {inter} and at least one "
                f"{self._folder}/*{FEATURE_SUFFIX} ({LAYOUT_HELP}); the folder {self._folder} "
                f"{state}; missing: {' and '.join(missing)}"
            )

    @property
    def raw_dir(self) -> str:
        return str(self._folder)

    @property
    def raw_file_names(self) -> list[str]:
        return [inter_file(self.name), *self._feature_files()]

    @property
    def processed_dir(self) -> str:
        local = self._folder / PROCESSED_DIR_NAME
        if (local.is_dir() and _is_writable(local)) or (
            not local.exists() and _is_writable(self._folder)
        ):
            return str(local)
        digest = hashlib.sha1(str(self._folder).encode("utf-8")).hexdigest()[:HASH_CHARS]
        return str(_default_cache_root() / f"{self.name}-{digest}")

    @property
    def processed_file_names(self) -> list[str]:
        fingerprint = hashlib.sha1(str(PROCESSED_VERSION).encode("utf-8"))
        for file_name in self.raw_file_names:
            stat = (self._folder / file_name).stat()
            fingerprint.update(f"{file_name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        return [f"data_v{PROCESSED_VERSION}_{fingerprint.hexdigest()[:HASH_CHARS]}.pt"]

    @property
    def modalities(self) -> list[str]:
        """Sorted modality names, e.g. ``['image', 'text']``."""
        return list(self._data.modalities)

    @property
    def num_users(self) -> int:
        """Number of users."""
        return int(self._data[USER].num_nodes)

    @property
    def num_items(self) -> int:
        """Number of items."""
        return int(self._data[ITEM].num_nodes)

    def _load_features(self) -> tuple[list[str], dict[str, torch.Tensor], int]:
        modalities, features, rows = [], {}, {}
        for file_name in self._feature_files():
            path = self._folder / file_name
            try:
                array = np.load(path, allow_pickle=False)
            except ValueError as e:
                raise ValueError(f"{path}: not a numeric .npy array ({e})") from e
            if array.dtype.kind not in "biuf":
                raise ValueError(f"{path}: features must be numeric (got dtype {array.dtype})")
            if array.ndim != 2:
                raise ValueError(
                    f"{path}: features must be a 2-D [num_items, d] array (got shape "
                    f"{array.shape})"
                )
            modality = modality_of(file_name)
            modalities.append(modality)
            features[modality] = torch.from_numpy(np.ascontiguousarray(array, np.float32))
            rows[file_name] = array.shape[0]
        if len(set(rows.values())) != 1:
            raise ValueError(
                f"{self._folder}: the feature files must have the same number of rows (one per "
                f"item) but have {rows}"
            )
        return sorted(modalities), features, next(iter(rows.values()))

    def process(self) -> None:
        inter_path = self._folder / inter_file(self.name)
        users, items, labels = read_inter(inter_path)
        if self._feature_files():
            modalities, features, num_items = self._load_features()
        else:  # interaction data only (allow_no_modality)
            modalities, features, num_items = [], {}, int(items.max()) + 1
        num_users = check_contiguous_ids(users, f"{USER_COLUMN} in {inter_path}")
        if items.max() >= num_items:
            bad = np.unique(items[items >= num_items])
            raise ValueError(
                f"{inter_path}: {ITEM_COLUMN} must be < {num_items} (the row count of the "
                f"*{FEATURE_SUFFIX} files) but {bad.size} distinct ids are >= {num_items} (max "
                f"{int(items.max())}, first: {bad[:5].tolist()})"
            )

        data = HeteroData()
        data[USER].num_nodes = num_users
        data[ITEM].num_nodes = num_items
        for m in modalities:
            data[ITEM][feature_key(m)] = features[m]
        data.modalities = modalities
        for split in SPLITS:
            mask = labels == SPLIT_LABELS[split]
            edge_index = np.stack([users[mask], items[mask]])
            data[split_edge_type(split)].edge_index = torch.from_numpy(edge_index)

        if self.pre_transform is not None:
            data = self.pre_transform(data)
        validate_data(data, allow_no_modality=self.allow_no_modality)
        self.save([data], self.processed_paths[0])

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(name={self.name!r}, users={self.num_users}, "
                f"items={self.num_items}, modalities={self.modalities})")
