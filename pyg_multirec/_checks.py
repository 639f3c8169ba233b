"""Argument checks shared across pyg_multirec (private helpers) and the library-wide switch
for the checks that read values back from the device.

Every helper takes ``name`` exactly as the error message should show it (``"k"`` or
``"'k'"``), so that each caller keeps its wording. Checks of types, shapes and sizes only
look at tensor metadata and always run. Checks of *values* (NaN/Inf scans, id ranges) must
read a result back to the host, which on a GPU stalls the host until the device has caught
up; they run only while :func:`value_checks_enabled` is true (see :func:`value_checks`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")
_value_checks = True


@contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    r"""Turns the checks that read tensor values (NaN/Inf scans of loss inputs, range
    checks of edge indices in :class:`~pyg_multirec.nn.LightGCNConv` and
    :func:`~pyg_multirec.nn.bipartite_to_homogeneous`) on or off inside a ``with`` block;
    types, shapes and sizes are always checked.

    Each such check reads one value back from the device, so on a GPU it stalls the host
    until the device has caught up, once per call. :func:`pyg_multirec.train.train` turns
    the checks off inside its training steps on accelerators and checks the summed loss
    for NaN/Inf instead. Also importable as ``pyg_multirec.value_checks`` and
    ``pyg_multirec.losses.value_checks``.

    .. code-block:: python

        with value_checks(False):
            loss = model.loss(users, pos, neg)["loss"]
    """
    global _value_checks
    previous, _value_checks = _value_checks, bool(enabled)
    try:
        yield
    finally:
        _value_checks = previous


def value_checks_enabled() -> bool:
    """Whether checks that read tensor values back to the host run (see :func:`value_checks`)."""
    return _value_checks


# ------------------------------------------------------------------------------------
# plain Python arguments
# ------------------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy integer (``bool`` excluded)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(value: Any, name: str, minimum: Optional[int] = None) -> int:
    """``value`` as an int; ``TypeError`` unless it is an integer, ``ValueError`` if it is
    below ``minimum``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int (got {type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum} (got {value})")
    return int(value)


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int; ``ValueError`` unless it is an integer >= ``minimum`` (wrong
    types included, for a single message such as ``"k must be a positive integer"``)."""
    if not is_int(value) or value < minimum:
        wanted = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise ValueError(f"{name} must be {wanted} (got {value!r})")
    return int(value)


def check_number(value: Any, name: str) -> float:
    """``value`` as a float; ``TypeError`` unless it is a real number (``bool`` excluded)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number (got {type(value).__name__})")
    return float(value)


def check_finite_float(
    value: Any, name: str, minimum: Optional[float] = None, strict: bool = False
) -> float:
    """``value`` as a float; ``TypeError`` unless a number, ``ValueError`` unless finite and
    ``>= minimum`` (``> minimum`` with ``strict``)."""
    number = check_number(value, name)
    below = minimum is not None and (number <= minimum if strict else number < minimum)
    if not math.isfinite(number) or below:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{name} must be a finite number{bound} (got {value})")
    return number


def check_choice(value: Any, name: str, choices: tuple[Any, ...]) -> Any:
    """``value``; ``ValueError`` unless it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices} (got {value!r})")
    return value


def check_reduction(reduction: str) -> str:
    return check_choice(reduction, "'reduction'", REDUCTIONS)


def check_temperature(temperature: float) -> float:
    return check_finite_float(temperature, "'temperature'", minimum=0, strict=True)


# ------------------------------------------------------------------------------------
# tensors
# ------------------------------------------------------------------------------------


def describe(obj: Any) -> str:
    """A tensor's shape, or another object's type name, for error messages."""
    return str(tuple(obj.shape)) if isinstance(obj, Tensor) else type(obj).__name__


def check_tensor(x: Any, name: str) -> Tensor:
    """``TypeError`` unless ``x`` is a tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (got {type(x).__name__})")
    return x


def check_edge_index_shape(edge_index: Any, name: str, what: str = "num_edges") -> Tensor:
    """``ValueError`` unless ``edge_index`` is a ``[2, E]`` tensor, ``TypeError`` unless
    its dtype is int32 or int64 (metadata only: no host sync)."""
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"{name} must have shape [2, {what}] (got {describe(edge_index)})")
    if edge_index.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name} must be an integer tensor (got {edge_index.dtype})")
    return edge_index


def id_range(ids: Tensor) -> tuple[int, int]:
    """``(min, max)`` of a non-empty integer tensor, read back in one host sync."""
    low, high = torch.aminmax(ids)
    return tuple(torch.stack([low, high]).tolist())  # type: ignore[return-value]


def out_of_range(ids: Tensor, size: int) -> Optional[tuple[int, int]]:
    """``(min, max)`` of ``ids`` if some id lies outside ``[0, size)``, else ``None`` (also
    for an empty tensor). One host sync; callers skip it when value checks are off."""
    if ids.numel() == 0:
        return None
    low, high = id_range(ids)
    return (low, high) if low < 0 or high >= size else None


def check_float_tensor(x: Tensor, name: str, dim: Optional[int] = None) -> None:
    """Raise if ``x`` is not a floating tensor of ``dim`` dimensions free of NaN and Inf
    (the scan only while value checks are on). ``name`` is shown quoted."""
    if not isinstance(x, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor (got {type(x).__name__})")
    if not x.is_floating_point():
        raise TypeError(f"'{name}' must be a floating-point tensor (got dtype {x.dtype})")
    if dim is not None and x.dim() != dim:
        raise ValueError(
            f"'{name}' must be a {dim}-dimensional tensor (got shape {tuple(x.shape)})"
        )
    if _value_checks and not bool(torch.isfinite(x).all()):
        raise ValueError(f"'{name}' contains NaN or infinite values")


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"'{name_a}' and '{name_b}' must have the same shape "
            f"(got {tuple(a.shape)} and {tuple(b.shape)})"
        )


def check_same_dtype_and_device(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.dtype != b.dtype or a.device != b.device:
        raise ValueError(
            f"'{name_a}' and '{name_b}' must have the same dtype and device (got {a.dtype} on "
            f"{a.device} and {b.dtype} on {b.device})"
        )


def check_paired(
    a: Tensor, b: Tensor, name_a: str, name_b: str, min_rows: Optional[int] = None
) -> None:
    """Raise unless ``a`` and ``b`` are two views of the same samples: 2-d floating tensors
    of one shape, dtype and device, free of NaN/Inf, with at least ``min_rows`` rows."""
    check_float_tensor(a, name_a, dim=2)
    check_float_tensor(b, name_b, dim=2)
    check_same_shape(a, b, name_a, name_b)
    check_same_dtype_and_device(a, b, name_a, name_b)
    if min_rows is not None:
        check_min_rows(a, name_a, min_rows)


def check_min_rows(x: Tensor, name: str, minimum: int = 2) -> None:
    if x.size(0) < minimum:
        raise ValueError(
            f"'{name}' needs at least {minimum} rows (samples) for in-batch negatives "
            f"(got {x.size(0)})"
        )


def reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values
