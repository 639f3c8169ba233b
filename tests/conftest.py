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
