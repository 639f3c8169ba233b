"""Tests of the readers of ``pyg-multirec convert`` (pyg_multirec/datasets/readers.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyg_multirec.datasets import read_feature, read_ids, read_interactions


def test_readers(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text("item;user;when\n007;u1;2021-05-01T10:00:00\n7;u2;2021-05-01T10:00:01\n")
    users, items, times = read_interactions(path, "user", "item", "when")
    assert items.tolist() == ["007", "7"]  # leading zeros: ids stay strings
    assert users.tolist() == ["u1", "u2"]
    assert times[1] - times[0] == 1.0
    path.write_text("user,item,timestamp\n1,2,30\n3,4,10\n")
    users, items, times = read_interactions(path)
    assert users.dtype == np.int64 and times.tolist() == [30, 10]  # 'timestamp' found

    import scipy.sparse

    matrix = scipy.sparse.random(5, 4, density=0.5, format="csr", random_state=0)
    scipy.sparse.save_npz(tmp_path / "sparse.npz", matrix)
    np.testing.assert_array_equal(read_feature(tmp_path / "sparse.npz"), matrix.toarray())
    np.savez(tmp_path / "one.npz", np.eye(3))
    np.testing.assert_array_equal(read_feature(tmp_path / "one.npz"), np.eye(3))
    with pytest.raises(ValueError, match="must be .npy or .npz"):
        (tmp_path / "f.txt").write_text("1")
        read_feature(tmp_path / "f.txt")
    (tmp_path / "ids.txt").write_text("3\n\n1\n2\n")
    assert read_ids(tmp_path / "ids.txt").tolist() == [3, 1, 2]


def test_parquet_roundtrip(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"user": ["a", "b", "a"], "item": [1, 2, 2], "timestamp": [3, 2, 1]})
    pq.write_table(table, tmp_path / "log.parquet")
    users, items, times = read_interactions(tmp_path / "log.parquet")
    assert users.tolist() == ["a", "b", "a"] and items.tolist() == [1, 2, 2]
    assert times.tolist() == [3, 2, 1]
