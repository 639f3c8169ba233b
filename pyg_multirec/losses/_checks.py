"""Kept for modules that still import the losses' checks from here; they now live in
:mod:`pyg_multirec._checks` (one copy for the whole library)."""

from pyg_multirec._checks import (  # noqa: F401
    REDUCTIONS,
    check_float_tensor,
    check_min_rows,
    check_paired,
    check_reduction,
    check_same_dtype_and_device,
    check_same_shape,
    check_temperature,
    reduce,
    value_checks,
)
