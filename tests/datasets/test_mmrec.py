import csv
import os
import stat
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from pyg_multirec.datasets import MMRecDataset, validate_data
from tests.datasets.helpers import tiny_interactions, write_mmrec

SPLIT_OF_LABEL = {"0": "train", "1": "valid", "2": "test"}


def reference_edges(inter: Path) -> dict[str, torch.Tensor]:
    """Independent parse of an MMRec .inter file with the csv module, in file order."""
    edges = {"train": [], "valid": [], "test": []}
    with open(inter, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            edges[SPLIT_OF_LABEL[row["x_label"]]].append((int(row["userID"]), int(row["itemID"])))
    return {s: torch.tensor(e, dtype=torch.long).t() for s, e in edges.items()}


def small_features(num_items: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.standard_normal((num_items, 6)).astype(np.float32),
        "text": rng.standard_normal((num_items, 4)),  # float64 on disk: loaded as float32
    }


# ---------------------------------------------------------------- the real MovieLens-100K


def test_ml100k_matches_readme(ml100k_root):
    dataset = MMRecDataset(ml100k_root, "ml100k")
    assert len(dataset) == 1
    assert dataset.num_users == 943 and dataset.num_items == 1349
    assert dataset.modalities == ["genre", "text"]
    data = dataset[0]
    assert data["user"].num_nodes == 943 and data["item"].num_nodes == 1349
    assert data.modalities == ["genre", "text"]
    assert data["item"].genre_feat.shape == (1349, 19)
    assert data["item"].text_feat.shape == (1349, 384)
    assert data["item"].genre_feat.dtype == torch.float32
    sizes = {s: data["user", s, "item"].edge_index.size(1) for s in ("train", "valid", "test")}
    assert sizes == {"train": 79451, "valid": 9918, "test": 9918}
    validate_data(data)

    # Same interactions, in file order, as an independent csv parse.
    folder = ml100k_root / "ml100k"
    expected = reference_edges(folder / "ml100k.inter")
    for split, edge_index in expected.items():
        assert torch.equal(data["user", split, "item"].edge_index, edge_index)
    for m in ("genre", "text"):
        reference = torch.from_numpy(np.load(folder / f"{m}_feat.npy"))
        assert torch.equal(data["item"][f"{m}_feat"], reference)

    # README: every user has >= 15 train, >= 2 valid and >= 2 test interactions.
    for split, least in (("train", 15), ("valid", 2), ("test", 2)):
        degree = torch.bincount(data["user", split, "item"].edge_index[0], minlength=943)
        assert int(degree.min()) >= least
    # Genre rows are multi-hot with at least one genre.
    assert bool((data["item"].genre_feat.sum(dim=1) >= 1).all())


def test_ml100k_read_only_folder_uses_cache(ml100k_root, tmp_path, monkeypatch):
    folder = ml100k_root / "ml100k"
    if os.access(folder, os.W_OK) and folder.stat().st_mode & 0o222:
        pytest.skip("the data folder is writable here")
    monkeypatch.setenv("PYG_MULTIREC_CACHE", str(tmp_path / "cache"))
    processed = folder / "processed"  # may ship with the data; it must not be written to

    def listing():
        return sorted((p.name, p.stat().st_mtime_ns) for p in processed.glob("*"))

    before = listing()
    dataset = MMRecDataset(ml100k_root, "ml100k")
    assert Path(dataset.processed_dir).parent == tmp_path / "cache"
    assert Path(dataset.processed_dir).name.startswith("ml100k-")
    assert Path(dataset.processed_paths[0]).is_file()
    assert listing() == before


# ------------------------------------------------------------ Amazon-style files in tmp_path


def test_amazon_layout_loads(tmp_path):
    users, items, labels = tiny_interactions()
    features = small_features(5)
    folder = write_mmrec(tmp_path, "baby", users, items, labels, features)
    dataset = MMRecDataset(tmp_path, "baby")
    assert dataset.raw_dir == str(folder)
    assert Path(dataset.processed_dir) == folder / "processed"
    assert dataset.modalities == ["image", "text"]
    assert (dataset.num_users, dataset.num_items) == (3, 5)  # item 4 has no interaction
    data = dataset[0]
    assert data["item"].image_feat.dtype == torch.float32
    assert data["item"].text_feat.dtype == torch.float32
    assert torch.equal(data["item"].image_feat, torch.from_numpy(features["image"]))
    assert torch.allclose(data["item"].text_feat, torch.from_numpy(features["text"]).float())
    expected = reference_edges(folder / "baby.inter")
    for split, edge_index in expected.items():
        assert torch.equal(data["user", split, "item"].edge_index, edge_index)
    assert "MMRecDataset(name='baby'" in repr(dataset)

    # A second instance reads the processed file instead of re-processing.
    mtime = Path(dataset.processed_paths[0]).stat().st_mtime_ns
    again = MMRecDataset(str(tmp_path), "baby")
    assert again.processed_paths == dataset.processed_paths
    assert Path(again.processed_paths[0]).stat().st_mtime_ns == mtime
    assert torch.equal(again[0]["user", "test", "item"].edge_index, expected["test"])


def test_extra_modalities_sorted_and_columns_in_any_order(tmp_path):
    users, items, labels = tiny_interactions()
    features = {**small_features(5), "audio": np.ones((5, 2), np.float32)}
    header = ("x_label", "timestamp", "itemID", "userID")
    write_mmrec(tmp_path, "toy", users, items, labels, features, header=header)
    data = MMRecDataset(tmp_path, "toy")[0]
    assert data.modalities == ["audio", "image", "text"]
    assert torch.equal(data["user", "train", "item"].edge_index,
                       torch.tensor([[0, 0, 1, 2], [0, 1, 1, 0]]))


def test_raw_change_triggers_reprocessing(tmp_path):
    users, items, labels = tiny_interactions()
    write_mmrec(tmp_path, "baby", users, items, labels, small_features(5))
    first = MMRecDataset(tmp_path, "baby")
    assert first.modalities == ["image", "text"]
    first_path = first.processed_paths[0]
    np.save(tmp_path / "baby" / "audio_feat.npy", np.zeros((5, 3), np.float32))
    second = MMRecDataset(tmp_path, "baby")
    assert second.modalities == ["audio", "image", "text"]
    assert second.processed_paths[0] != first_path


def test_read_only_folder_processes_into_cache(tmp_path, monkeypatch):
    users, items, labels = tiny_interactions()
    folder = write_mmrec(tmp_path, "baby", users, items, labels, small_features(5))
    cache = tmp_path / "cache"
    monkeypatch.setenv("PYG_MULTIREC_CACHE", str(cache))
    mode = folder.stat().st_mode
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        dataset = MMRecDataset(tmp_path, "baby")
        assert Path(dataset.processed_dir).parent == cache
        assert not (folder / "processed").exists()
        assert dataset.num_items == 5
        # Another folder of the same name gets another cache entry.
        other = write_mmrec(tmp_path / "elsewhere", "baby", users, items, labels,
                            small_features(5))
        other.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            assert MMRecDataset(tmp_path / "elsewhere", "baby").processed_dir != (
                dataset.processed_dir)
        finally:
            other.chmod(mode)
    finally:
        folder.chmod(mode)


def test_transforms(tmp_path):
    users, items, labels = tiny_interactions()
    write_mmrec(tmp_path, "baby", users, items, labels, small_features(5))

    def double_text(data):
        data["item"].text_feat = data["item"].text_feat * 2
        return data

    plain = MMRecDataset(tmp_path, "baby")[0]
    transformed = MMRecDataset(tmp_path, "baby", transform=double_text)[0]
    assert torch.allclose(transformed["item"].text_feat, 2 * plain["item"].text_feat)
    pre = MMRecDataset(tmp_path, "baby", pre_transform=double_text, force_reload=True)[0]
    assert torch.allclose(pre["item"].text_feat, 2 * plain["item"].text_feat)


# ------------------------------------------------------------------------------ errors


def test_missing_folder_names_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"expected .*baby/baby\.inter and at least one "
                                                r".*baby/\*_feat\.npy.*MMRec layout"):
        MMRecDataset(tmp_path, "baby")


def test_missing_feature_files(tmp_path):
    users, items, labels = tiny_interactions()
    write_mmrec(tmp_path, "baby", users, items, labels, {})
    with pytest.raises(FileNotFoundError, match=r"missing: at least one .*\*_feat\.npy"):
        MMRecDataset(tmp_path, "baby")


def test_missing_inter_file(tmp_path):
    (tmp_path / "baby").mkdir()
    np.save(tmp_path / "baby" / "image_feat.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(FileNotFoundError, match=r"missing: .*baby\.inter$"):
        MMRecDataset(tmp_path, "baby")


def test_bad_name():
    with pytest.raises(ValueError, match="'name'"):
        MMRecDataset("/tmp", "a/b")


def test_feature_rows_differ(tmp_path):
    users, items, labels = tiny_interactions()
    features = {"image": np.zeros((5, 2), np.float32), "text": np.zeros((6, 2), np.float32)}
    write_mmrec(tmp_path, "baby", users, items, labels, features)
    with pytest.raises(ValueError, match=r"same number of rows.*'image_feat.npy': 5.*"
                                         r"'text_feat.npy': 6"):
        MMRecDataset(tmp_path, "baby")


def test_item_id_beyond_feature_rows(tmp_path):
    users, items, labels = tiny_interactions()
    write_mmrec(tmp_path, "baby", users, items, labels, small_features(3))
    with pytest.raises(ValueError, match=r"itemID must be < 3.*1 distinct ids are >= 3 \(max 3"):
        MMRecDataset(tmp_path, "baby")


def test_feature_not_2d(tmp_path):
    users, items, labels = tiny_interactions()
    write_mmrec(tmp_path, "baby", users, items, labels, {"image": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match=r"image_feat.npy: features must be a 2-D"):
        MMRecDataset(tmp_path, "baby")


def test_nan_features(tmp_path):
    users, items, labels = tiny_interactions()
    features = small_features(5)
    features["image"][[0, 2], 1] = np.nan
    write_mmrec(tmp_path, "baby", users, items, labels, features)
    with pytest.raises(ValueError, match=r"modality 'image'.*NaN or infinite values in 2 of 5"):
        MMRecDataset(tmp_path, "baby")


def test_non_contiguous_user_ids(tmp_path):
    users, items, labels = tiny_interactions()
    users = [u if u < 2 else 4 for u in users]  # users 2 and 3 missing
    write_mmrec(tmp_path, "baby", users, items, labels, small_features(5))
    with pytest.raises(ValueError, match=r"userID in .*baby\.inter.*contiguous.*2 ids in 0..4 "
                                         r"are missing.*\[2, 3\]"):
        MMRecDataset(tmp_path, "baby")


def test_bad_x_label(tmp_path):
    users, items, labels = tiny_interactions()
    labels[3] = 3
    write_mmrec(tmp_path, "baby", users, items, labels, small_features(5))
    with pytest.raises(ValueError, match=r"x_label must hold only \[0, 1, 2\].*1 rows.*\[3\.0\]"):
        MMRecDataset(tmp_path, "baby")


def test_missing_header_column(tmp_path):
    users, items, labels = tiny_interactions()
    write_mmrec(tmp_path, "baby", users, items, labels, small_features(5),
                header=("userID", "itemID", "rating"))
    with pytest.raises(ValueError, match=r"header.*missing \['x_label'\]"):
        MMRecDataset(tmp_path, "baby")


def test_non_integer_ids(tmp_path):
    folder = write_mmrec(tmp_path, "baby", [0], [0], [0], small_features(2))
    (folder / "baby.inter").write_text("userID\titemID\tx_label\n0\t1.5\t0\n")
    with pytest.raises(ValueError, match="itemID must hold integers"):
        MMRecDataset(tmp_path, "baby")
    (folder / "baby.inter").write_text("userID\titemID\tx_label\n0\tabc\t0\n")
    with pytest.raises(ValueError, match="could not parse"):
        MMRecDataset(tmp_path, "baby")
    (folder / "baby.inter").write_text("userID\titemID\tx_label\n")
    with pytest.raises(ValueError, match="no interaction row"):
        MMRecDataset(tmp_path, "baby")


@pytest.mark.parametrize("split, label", [("valid", 1), ("test", 2), ("train", 0)])
def test_empty_split(tmp_path, split, label):
    users, items, labels = tiny_interactions()
    kept = [k for k, x in enumerate(labels) if x != label]
    if split == "train":  # keep users contiguous: a train-less file still names every user
        kept = list(range(len(labels)))
        labels = [1 if x == 0 else x for x in labels]
    write_mmrec(tmp_path, "baby", [users[k] for k in kept], [items[k] for k in kept],
                [labels[k] for k in kept], small_features(5))
    with pytest.raises(ValueError, match=f"split '{split}'.*empty"):
        MMRecDataset(tmp_path, "baby")


def test_label_counts_of_tiny_file(tmp_path):
    users, items, labels = tiny_interactions()
    write_mmrec(tmp_path, "baby", users, items, labels, small_features(5))
    data = MMRecDataset(tmp_path, "baby")[0]
    counts = Counter(labels)
    for label, split in SPLIT_OF_LABEL.items():
        assert data["user", split, "item"].edge_index.size(1) == counts[int(label)]
