"""Id arrays for the MMRec writer and the readers of ``pyg-multirec convert`` (private)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: How many offending values an error message lists.
MAX_LISTED = 5


def listed(values: Sequence[Any] | np.ndarray) -> str:
    """The first few values, for error messages."""
    head = values[:MAX_LISTED]
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in head)
    return shown + (", ..." if len(values) > MAX_LISTED else "")


def as_ids(values: Any, arg: str) -> np.ndarray:
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
            raise ValueError(f"{arg} has empty ids or ids containing tabs/newlines: {listed(bad)}")
    return array
