"""Input checks and reductions shared by the losses (private helpers)."""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")
_value_checks = True


@contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    r"""Turns the losses' NaN/Inf scans of their inputs on or off inside a ``with`` block
    (types, shapes and sizes are always checked).

    Each scan reads one value back from the device, so on a GPU it stalls the host until
    the device has caught up, once per loss call. :func:`pyg_multirec.train.train` turns
    the scans off inside its training steps on accelerators and checks the summed loss
    for NaN/Inf instead (every few steps and at the end of each epoch).

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


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"'reduction' must be one of {REDUCTIONS} (got {reduction!r})")
    return reduction


def check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"'temperature' must be a number (got {type(temperature).__name__})")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"'temperature' must be a finite number > 0 (got {temperature})")
    return float(temperature)


def check_float_tensor(x: Tensor, name: str, dim: Optional[int] = None) -> None:
    """Raise if ``x`` is not a floating tensor of ``dim`` dimensions free of NaN and Inf."""
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
