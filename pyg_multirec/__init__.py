"""pyg_multirec: PyTorch Geometric building blocks for multimodal recommendation."""

__version__ = "0.1.0"
