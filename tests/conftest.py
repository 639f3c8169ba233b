"""Shared fixtures: small planted data, the real data path. (The example scripts are loaded
by path: ``tests.helpers.load_example``.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

DATA_ROOT = Path(os.environ.get("PYG_MULTIREC_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_data():
    """A small planted data set (300 users, 150 items, two modalities)."""
    from pyg_multirec.datasets import SyntheticMultiModal

    return SyntheticMultiModal(
        num_users=300,
        num_items=150,
        num_interactions=6000,
        modality_dims={"image": 32, "text": 16},
        seed=0,
    )[0]


@pytest.fixture(scope="session")
def ml100k_root() -> Path:
    if not (DATA_ROOT / "ml100k" / "ml100k.inter").is_file():
        pytest.skip(f"real data not found under {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture
def two_threads():
    """Two intra-op threads for the test: with several threads the CPU backward of
    ``x[index]`` adds with atomics (before the models used ``gather_rows``, MICRO's epochs
    differed between identical runs about 1 run in 3)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)
