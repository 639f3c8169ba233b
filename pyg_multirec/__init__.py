"""pyg_multirec: PyTorch Geometric building blocks for multimodal recommendation."""

from typing import Any

__version__ = "0.1.0"

__all__ = ["value_checks"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that ``import pyg_multirec`` (the CLI's --version) stays light.
    if name == "value_checks":
        from pyg_multirec._checks import value_checks

        return value_checks
    raise AttributeError(f"module 'pyg_multirec' has no attribute {name!r}")
