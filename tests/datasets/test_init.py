import pytest
import torch

import pyg_multirec.datasets as datasets
from pyg_multirec.datasets import SyntheticMultiModal, load_dataset
from tests.datasets.helpers import tiny_interactions, write_mmrec


def test_exports():
    assert sorted(datasets.__all__) == [
        "MMRecDataset", "MMRecSummary", "SyntheticMultiModal", "cold_start_split",
        "convert_files", "holdout_labels", "load_dataset", "read_feature", "read_ids",
        "read_interactions", "validate_data", "write_mmrec",
    ]  # fmt: skip
    for name in datasets.__all__:
        assert hasattr(datasets, name)


def test_load_synthetic_passes_kwargs():
    kwargs = dict(num_users=30, num_items=20, num_interactions=200, seed=4)
    data = load_dataset("synthetic", **kwargs)
    expected = SyntheticMultiModal(**kwargs)[0]
    assert data["user"].num_nodes == 30 and data["item"].num_nodes == 20
    for s in ("train", "valid", "test"):
        assert torch.equal(data["user", s, "item"].edge_index,
                           expected["user", s, "item"].edge_index)


def test_load_mmrec_folder(tmp_path):
    users, items, labels = tiny_interactions()
    write_mmrec(tmp_path, "baby", users, items, labels,
                {"image": torch.randn(5, 3).numpy()})
    data = load_dataset("baby", tmp_path)
    assert data.modalities == ["image"]
    assert data["user", "train", "item"].edge_index.size(1) == labels.count(0)
    forced = load_dataset("baby", str(tmp_path), force_reload=True)
    assert torch.equal(forced["item"].image_feat, data["item"].image_feat)


def test_load_ml100k(ml100k_root):
    data = load_dataset("ml100k", ml100k_root)
    assert (data["user"].num_nodes, data["item"].num_nodes) == (943, 1349)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.inter"):
        load_dataset("nothing", tmp_path)
    with pytest.raises(TypeError, match="'name'"):
        load_dataset(3)
