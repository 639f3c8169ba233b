"""Readers of the files that ``pyg-multirec convert`` takes: interaction logs (CSV/TSV, or
Parquet with pyarrow), feature matrices (``.npy``/``.npz``) and item id lists."""

from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path

import numpy as np

from pyg_multirec.datasets._arrays import as_ids
from pyg_multirec.datasets.layout import TIME_COLUMN

__all__ = ["read_feature", "read_ids", "read_interactions"]

INT_PATTERN = re.compile(r"^[+-]?[0-9]+$")
#: File suffixes read as Parquet by :func:`read_interactions`.
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Delimiters tried when sniffing a delimited text file.
SNIFF_DELIMITERS = ",\t;|"
SNIFF_BYTES = 64 * 1024
#: Keys that ``scipy.sparse.save_npz`` writes; such an archive is read as one sparse matrix.
SCIPY_SPARSE_KEYS = frozenset({"data", "format", "shape"})
#: Column read as timestamps when the caller names none.
DEFAULT_TIME_COLUMN = TIME_COLUMN
#: Zone assumed for ISO date-times written without one.
UTC_ZONE = dt.timezone(dt.timedelta(0))


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
        users, items = as_ids(arrays[0], "users"), as_ids(arrays[1], "items")
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
        return as_ids(np.load(path, allow_pickle=False), "item_ids")
    with path.open(encoding="utf-8-sig") as f:
        values = [line.strip() for line in f if line.strip()]
    if not values:
        raise ValueError(f"item id file {path} is empty")
    return _parse_ids(values)
