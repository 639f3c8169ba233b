import numpy as np
import pytest
import torch

from pyg_multirec.datasets import validate_data
from pyg_multirec.datasets.validation import check_contiguous_ids
from tests.datasets.helpers import make_data

TRAIN = ("user", "train", "item")
VALID = ("user", "valid", "item")
TEST = ("user", "test", "item")


def test_valid_data_passes():
    data = make_data()
    assert validate_data(data) is None
    # float64 features are accepted too (the contract asks for floating features).
    data["item"].image_feat = data["item"].image_feat.double()
    validate_data(data)


def test_not_heterodata():
    with pytest.raises(TypeError, match="HeteroData"):
        validate_data({"user": 3})


@pytest.mark.parametrize("node_type", ["user", "item"])
def test_missing_node_count(node_type):
    data = make_data()
    del data[node_type].num_nodes
    with pytest.raises(ValueError, match=rf"data\['{node_type}'\].num_nodes is missing"):
        validate_data(data)


def test_bad_node_count():
    data = make_data()
    data["user"].num_nodes = 0
    with pytest.raises(ValueError, match="positive integer"):
        validate_data(data)


def test_modalities_missing_unsorted_or_empty():
    data = make_data()
    del data.modalities
    with pytest.raises(ValueError, match="data.modalities is missing"):
        validate_data(data)
    data.modalities = ["text", "image"]
    with pytest.raises(ValueError, match="sorted"):
        validate_data(data)
    data.modalities = "image"
    with pytest.raises(ValueError, match="list of str"):
        validate_data(data)
    data.modalities = []
    with pytest.raises(ValueError, match="at least one modality"):
        validate_data(data)
    validate_data(data, allow_no_modality=True)


def test_feature_missing():
    data = make_data()
    del data["item"].text_feat
    with pytest.raises(ValueError, match=r"modality 'text': data\['item'\].text_feat is missing"):
        validate_data(data)


def test_feature_wrong_rows_names_modality_shape_and_count():
    data = make_data(num_items=4)
    data["item"].image_feat = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"modality 'image'.*shape \(5, 3\).*\[4, d\].*4 items"):
        validate_data(data)
    data["item"].image_feat = torch.randn(4)
    with pytest.raises(ValueError, match=r"modality 'image'.*shape \(4,\)"):
        validate_data(data)


def test_feature_not_floating():
    data = make_data()
    data["item"].text_feat = torch.ones(4, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="'text'.*floating"):
        validate_data(data)


def test_feature_nan_counts_rows():
    data = make_data(num_items=4)
    feat = data["item"].image_feat
    feat[1, 0] = float("nan")
    feat[3, 2] = float("inf")
    feat[3, 1] = float("nan")
    expected = r"'image'.*NaN or infinite values in 2 of 4 rows.*\[1, 3\]"
    with pytest.raises(ValueError, match=expected):
        validate_data(data)


@pytest.mark.parametrize("edge_type", [TRAIN, VALID, TEST])
def test_split_missing(edge_type):
    data = make_data()
    del data[edge_type]
    with pytest.raises(ValueError, match=f"split '{edge_type[1]}'.*missing"):
        validate_data(data)


def test_split_dtype_and_shape():
    data = make_data()
    data[VALID].edge_index = data[VALID].edge_index.int()
    with pytest.raises(ValueError, match="split 'valid'.*torch.long"):
        validate_data(data)
    data[VALID].edge_index = torch.zeros(3, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"split 'valid'.*\[2, E\].*\(3, 2\)"):
        validate_data(data)


@pytest.mark.parametrize("edge_type", [TRAIN, VALID, TEST])
def test_split_empty(edge_type):
    data = make_data()
    data[edge_type].edge_index = torch.empty(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match=f"split '{edge_type[1]}'.*empty"):
        validate_data(data)


def test_split_ids_out_of_range_name_split_side_and_id():
    data = make_data(num_users=3, num_items=4)
    data[TEST].edge_index[1, 0] = 7
    with pytest.raises(ValueError, match=r"split 'test': item ids must lie in \[0, 3\].*max 7"):
        validate_data(data)
    data = make_data(num_users=3, num_items=4)
    data[TRAIN].edge_index[0, 1] = -2
    with pytest.raises(ValueError, match=r"split 'train': user ids.*min -2"):
        validate_data(data)


def test_every_user_needs_training_interaction():
    data = make_data(num_users=5, num_items=6)
    keep = data[TRAIN].edge_index[0] % 2 == 0  # users 1 and 3 lose their training items
    data[TRAIN].edge_index = data[TRAIN].edge_index[:, keep]
    with pytest.raises(ValueError, match=r"2 of 5 users have no training interaction.*\[1, 3\]"):
        validate_data(data)
    validate_data(data, require_train_per_user=False)


def test_check_contiguous_ids():
    assert check_contiguous_ids(np.array([2, 0, 1, 1]), "userID") == 3
    assert check_contiguous_ids(torch.tensor([0]), "userID") == 1
    expected = r"userID in x.inter.*3 ids in 0..6 are missing.*\[1, 2, 5\]"
    with pytest.raises(ValueError, match=expected):
        check_contiguous_ids([0, 3, 4, 6], "userID in x.inter")
    with pytest.raises(ValueError, match=">= 0"):
        check_contiguous_ids([0, -1], "userID")
    with pytest.raises(ValueError, match="no ids"):
        check_contiguous_ids([], "userID")
    with pytest.raises(ValueError, match="integers"):
        check_contiguous_ids(torch.tensor([0.0, 1.0]), "userID")


def test_global_store_only_for_modalities():
    # A node attribute called 'modalities' does not count as data.modalities.
    data = make_data()
    del data.modalities
    data["item"].modalities = ["image", "text"]
    with pytest.raises(ValueError, match="data.modalities is missing"):
        validate_data(data)
    # Set on the global store it counts, and validation changed nothing in the data.
    data.modalities = ["image", "text"]
    validate_data(data)
    reference = make_data()
    for node_type in ("user", "item"):
        assert data[node_type].num_nodes == reference[node_type].num_nodes
    for edge_type in reference.edge_types:
        assert torch.equal(data[edge_type].edge_index, reference[edge_type].edge_index)
    for m in reference.modalities:
        assert torch.equal(data["item"][f"{m}_feat"], reference["item"][f"{m}_feat"])
