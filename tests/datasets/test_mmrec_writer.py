"""Tests of the MMRec writer (pyg_multirec/datasets/mmrec_writer.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyg_multirec.datasets import (
    MMRecDataset,
    convert_files,
    read_interactions,
    write_mmrec,
)
from pyg_multirec.datasets.layout import INTER_HEADER, SPLIT_LABELS
from tests.datasets.helpers import read_inter_file, read_mapping


@pytest.mark.parametrize(
    "n, expected",
    [(1, (1, 0, 0)), (2, (2, 0, 0)), (3, (1, 1, 1)), (5, (3, 1, 1)), (10, (8, 1, 1)),
     (15, (11, 2, 2)), (25, (21, 2, 2)), (35, (27, 4, 4)), (64, (52, 6, 6))],
)  # fmt: skip
def test_split_sizes(tmp_path: Path, n: int, expected: tuple[int, int, int]) -> None:
    # round(1.5) = round(2.5) = 2 and round(3.5) = 4 (halves to even), as in the README
    items = np.arange(n)
    folder = write_mmrec(np.zeros(n, int), items, {"x": np.ones((n, 2))}, tmp_path, "s")
    _, table = read_inter_file(folder / "s.inter")
    assert tuple(np.bincount(table[:, 3], minlength=3).tolist()) == expected
    # without timestamps: file order, and the timestamp column is the input row
    np.testing.assert_array_equal(table[:, 2], np.arange(n))
    assert (np.diff(table[:, 3]) >= 0).all()  # train, then valid, then test


def test_write_mmrec_dedup_keeps_earliest(tmp_path: Path) -> None:
    users = np.array([7, 7, 7, 7, 7])
    items = np.array([3, 1, 2, 3, 4])
    times = np.array([50, 10, 20, 5, 40])  # item 3 first seen at t=5 (4th row)
    folder = write_mmrec(users, items, {"x": np.eye(4)}, tmp_path, "d", timestamps=times)
    _, table = read_inter_file(folder / "d.inter")
    # new item ids 0..3 for 1..4; order by time: 3 (t5), 1 (t10), 2 (t20), 4 (t40)
    assert table[:, 1].tolist() == [2, 0, 1, 3]
    assert table[:, 2].tolist() == [5, 10, 20, 40]
    assert table[:, 3].tolist() == [0, 0, 1, 2]


def test_write_mmrec_catalogue_rows_and_datetimes(tmp_path: Path) -> None:
    users = np.array(["b", "a", "a", "b", "a"])
    items = np.array([5, 2, 5, 8, 9])
    catalogue = np.arange(12 * 3, dtype=np.float64).reshape(12, 3)  # row r = item id r
    times = np.array(["2020-01-02", "2020-01-01", "2020-01-03", "2020-01-01", "2020-01-05"],
                     dtype="datetime64[s]")  # fmt: skip
    folder = write_mmrec(users, items, {"v": catalogue}, tmp_path, "cat", timestamps=times)
    np.testing.assert_array_equal(np.load(folder / "v_feat.npy"), catalogue[[2, 5, 8, 9]])
    _, table = read_inter_file(folder / "cat.inter")
    assert table[0, 2] == 1577836800  # 2020-01-01T00:00:00Z
    assert read_mapping(folder / "u_id_mapping.csv") == {"a": 0, "b": 1}


def test_write_mmrec_errors(tmp_path: Path) -> None:
    ones = {"x": np.ones((2, 2))}
    with pytest.raises(ValueError, match="users and items must have the same length"):
        write_mmrec([1, 2], [1], ones, tmp_path, "e")
    with pytest.raises(TypeError, match="users mixes id types"):
        write_mmrec(np.array([1, "a"], dtype=object), [1, 2], ones, tmp_path, "e")
    with pytest.raises(ValueError, match="tabs/newlines"):
        write_mmrec(["a\tb", "c"], [1, 2], ones, tmp_path, "e")
    with pytest.raises(ValueError, match="must be 2-D"):
        write_mmrec([1, 2], [1, 2], {"x": np.ones(2)}, tmp_path, "e")
    with pytest.raises(ValueError, match="non-empty dict"):
        write_mmrec([1, 2], [1, 2], {}, tmp_path, "e")
    with pytest.raises(ValueError, match="timestamps contain NaN"):
        write_mmrec([1, 2], [1, 2], ones, tmp_path, "e", timestamps=[1.0, np.nan])
    with pytest.raises(ValueError, match="name '../x' must be a plain folder name"):
        write_mmrec([1, 2], [1, 2], ones, tmp_path, "../x")
    with pytest.raises(ValueError, match="no interaction is left"):
        write_mmrec([1, 2], [1, 2], ones, tmp_path, "e", min_interactions=2)
    with pytest.raises(ValueError, match="interacted items are not in item_ids"):
        write_mmrec([1, 2], [1, 2], ones, tmp_path, "e", item_ids=[1, 3])
    with pytest.raises(ValueError, match="must not repeat"):
        write_mmrec([1, 2], [1, 2], ones, tmp_path, "e", item_ids=[1, 1])


def test_reproduces_published_ml100k(tmp_path: Path, ml100k_root: Path) -> None:
    """Converting MovieLens' raw u.data gives exactly the shipped ml100k.inter and mappings."""
    ml100k = ml100k_root / "ml100k"
    if not (ml100k / "raw" / "u.data").is_file():
        pytest.skip(f"{ml100k / 'raw' / 'u.data'} not found")
    users, items, times = read_interactions(ml100k / "raw" / "u.data", 0, 1, 3, header=False)
    text = np.load(ml100k / "text_feat.npy")
    folder = write_mmrec(users, items, {"text": text}, tmp_path, "ml", times, min_interactions=5)
    _, mine = read_inter_file(folder / "ml.inter")
    published = np.loadtxt(ml100k / "ml100k.inter", skiprows=1, dtype=np.int64)
    # published columns: userID itemID rating timestamp x_label
    np.testing.assert_array_equal(mine, published[:, [0, 1, 3, 4]])
    for mapping in ("u_id_mapping.csv", "i_id_mapping.csv"):
        assert (folder / mapping).read_text() == (ml100k / mapping).read_text()
    np.testing.assert_array_equal(np.load(folder / "text_feat.npy"), text)


def test_convert_files_summary_and_dataset_match_the_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    users = rng.choice([f"u{k}" for k in range(25)], size=400)
    items = rng.choice([f"sku{k:02d}" for k in range(18)], size=400)
    times = rng.integers(0, 10_000, size=400)
    log = tmp_path / "log.tsv"
    log.write_text("who\twhat\twhen\n" + "".join(
        f"{u}\t{i}\t{t}\n" for u, i, t in zip(users, items, times)
    ))  # fmt: skip
    image = rng.normal(size=(18, 6))
    np.save(tmp_path / "image.npy", image)
    np.savez(tmp_path / "text.npz", emb=rng.normal(size=(18, 4)), other=np.zeros(1))

    summary = convert_files(
        log, {"image": tmp_path / "image.npy", "text": (tmp_path / "text.npz", "emb")},
        tmp_path / "out", "shop", user_col="who", item_col="what", time_col="when",
        min_interactions=10,
    )  # fmt: skip
    folder = tmp_path / "out" / "shop"
    assert summary.folder == folder and summary.has_timestamps
    header, table = read_inter_file(folder / "shop.inter")
    assert tuple(header) == INTER_HEADER
    num_distinct = len(set(zip(users.tolist(), items.tolist())))
    assert summary.num_input == 400
    assert summary.num_duplicates == 400 - num_distinct
    assert summary.num_interactions == table.shape[0] == num_distinct - summary.num_filtered
    labels = np.bincount(table[:, 3], minlength=3)
    assert summary.split_counts == {s: int(labels[x]) for s, x in SPLIT_LABELS.items()}
    user_map = read_mapping(folder / "u_id_mapping.csv")
    item_map = read_mapping(folder / "i_id_mapping.csv")
    assert summary.num_users == len(user_map) == table[:, 0].max() + 1
    assert summary.num_items == len(item_map)
    # every kept user and item has >= 10 interactions (the 10-core)
    assert np.bincount(table[:, 0]).min() >= 10 and np.bincount(table[:, 1]).min() >= 10
    for modality, dim in (("image", 6), ("text", 4)):
        written = np.load(folder / f"{modality}_feat.npy")
        assert summary.feature_shapes[modality] == written.shape == (len(item_map), dim)
    kept_rows = [int(original[3:]) for original in item_map]  # sku07 -> row 7
    np.testing.assert_array_equal(
        np.load(folder / "image_feat.npy"), image[kept_rows].astype(np.float32)
    )

    data = MMRecDataset(tmp_path / "out", "shop")[0]
    assert data["user"].num_nodes == summary.num_users
    assert data["item"].num_nodes == summary.num_items
    assert data.modalities == ["image", "text"]
    for split, label in SPLIT_LABELS.items():
        edge_index = data["user", split, "item"].edge_index
        assert edge_index.size(1) == summary.split_counts[split]
        rows = table[table[:, 3] == label]
        assert edge_index.t().tolist() == rows[:, :2].tolist()
    for modality, shape in summary.feature_shapes.items():
        assert tuple(data["item"][f"{modality}_feat"].shape) == shape


def test_convert_files_time_col_empty_ignores_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\n1,1,30\n1,2,20\n1,3,10\n")
    np.save(tmp_path / "f.npy", np.eye(3))
    summary = convert_files(log, {"f": tmp_path / "f.npy"}, tmp_path, "d", time_col="")
    assert not summary.has_timestamps
    _, table = read_inter_file(tmp_path / "d" / "d.inter")
    assert table[:, 1].tolist() == [0, 1, 2] and table[:, 2].tolist() == [0, 1, 2]  # file order
    summary = convert_files(log, {"f": tmp_path / "f.npy"}, tmp_path, "d", overwrite=True)
    _, table = read_inter_file(tmp_path / "d" / "d.inter")
    assert summary.has_timestamps and table[:, 1].tolist() == [2, 1, 0]  # by time
