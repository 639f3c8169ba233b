"""Fixtures of the dataset tests: where the real data lives, a private processing cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ENV = "PYG_MULTIREC_DATA"
CACHE_ENV = "PYG_MULTIREC_CACHE"


def shared_data_dir() -> Path:
    """``$PYG_MULTIREC_DATA``, else ``shared/data`` beside the repository."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Processed files of read-only data folders go to a temporary cache, not ~/.cache."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "pyg_multirec_cache"))


@pytest.fixture
def ml100k_root() -> Path:
    root = shared_data_dir()
    if not (root / "ml100k" / "ml100k.inter").is_file():
        pytest.skip(f"MovieLens-100K not found under {root} (set ${DATA_ENV})")
    return root
