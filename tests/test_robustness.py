"""Bad input through the public API: every case raises an error that names the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyg_multirec.cli import main as cli_main
from pyg_multirec.datasets import MMRecDataset, SyntheticMultiModal, cold_start_split
from pyg_multirec.losses import (
    BPRLoss,
    CLUBEstimator,
    MultiModalInfoNCE,
    SoloSimLoss,
)
from pyg_multirec.metrics import ranking_metrics
from pyg_multirec.nn import (
    AttentionFusion,
    KNNStructureLayer,
    LightGCNConv,
    MultiModalItemGraph,
    knn_item_graph,
)

REPO = Path(__file__).resolve().parents[1]
NAN = float("nan")


def _write_mmrec(root: Path, name="toy", feat_rows=4, feat=None, labels=(0, 0, 1, 2)):
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["userID\titemID\tx_label"]
    rows += [f"0\t{i}\t{lab}" for i, lab in enumerate(labels)]
    (folder / f"{name}.inter").write_text("\n".join(rows) + "\n")
    features = np.ones((feat_rows, 3), np.float32) if feat is None else feat
    np.save(folder / "text_feat.npy", features)
    return root


CASES = [
    (
        "kNN k larger than the item count",
        lambda: knn_item_graph(torch.randn(5, 3), k=6),
        ValueError,
        r"k \(6\) must be <= number of items \(5\)",
    ),
    (
        "kNN features with NaN",
        lambda: knn_item_graph(torch.tensor([[NAN, 1.0], [1.0, 2.0], [3.0, 4.0]]), k=1),
        ValueError,
        "NaN",
    ),
    ("kNN features not 2-D", lambda: knn_item_graph(torch.randn(5), k=1), ValueError, "2-D"),
    (
        "skip lambda outside [0, 1]",
        lambda: KNNStructureLayer(4, 4, skip_lambda=1.5),
        ValueError,
        "skip_lambda",
    ),
    ("fusion of no modality", lambda: AttentionFusion(4, 4)([]), ValueError, "non-empty"),
    (
        "fusion of mismatched shapes",
        lambda: AttentionFusion(4, 4)([torch.randn(3, 4), torch.randn(2, 4)]),
        ValueError,
        "shape",
    ),
    ("temperature zero", lambda: SoloSimLoss(temperature=0), ValueError, "temperature"),
    (
        "alignment views of different sizes",
        lambda: SoloSimLoss()(torch.randn(4, 3), torch.randn(5, 3)),
        ValueError,
        "same shape",
    ),
    (
        "InfoNCE with an empty modality list",
        lambda: MultiModalInfoNCE()([], torch.randn(3, 4)),
        ValueError,
        "at least one modality",
    ),
    (
        "BPR scores of different lengths",
        lambda: BPRLoss()(torch.randn(3), torch.randn(4)),
        ValueError,
        "neg_scores",
    ),
    (
        "CLUB batches of different sizes",
        lambda: CLUBEstimator(3, 3, 4)(torch.randn(4, 3), torch.randn(5, 3)),
        ValueError,
        "batch size",
    ),
    (
        "metric cut-off above the item count",
        lambda: ranking_metrics(torch.randn(2, 5), torch.tensor([[0], [1]]), ks=(10,)),
        ValueError,
        "larger than the number of items",
    ),
    (
        "NaN scores",
        lambda: ranking_metrics(torch.tensor([[NAN, 1.0]]), torch.tensor([[0], [1]]), ks=(1,)),
        ValueError,
        "NaN",
    ),
    (
        "target item id out of range",
        lambda: ranking_metrics(torch.randn(2, 5), torch.tensor([[0], [7]]), ks=(1,)),
        ValueError,
        "out of range",
    ),
    (
        "float targets",
        lambda: ranking_metrics(torch.randn(2, 5), torch.tensor([[0.0], [1.0]]), ks=(1,)),
        TypeError,
        "long",
    ),
    (
        "edge ids beyond the node count",
        lambda: LightGCNConv()(torch.randn(3, 4), torch.tensor([[0, 5], [1, 2]])),
        ValueError,
        "edge_index",
    ),
    (
        "cold-start ratio outside (0, 1)",
        lambda: cold_start_split(
            SyntheticMultiModal(num_users=50, num_items=30, num_interactions=500)[0], cold_ratio=1.5
        ),
        ValueError,
        "cold_ratio",
    ),
    (
        "fixed modality weights of the wrong length",
        lambda: MultiModalItemGraph(2, learnable=False, init_weights=[1.0]),
        ValueError,
        "init_weights",
    ),
]


@pytest.mark.parametrize("name, call, error, match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(name, call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_missing_dataset_files_say_what_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"baby\.inter"):
        MMRecDataset(str(tmp_path), "baby")


def test_feature_rows_must_match_the_items(tmp_path):
    root = _write_mmrec(tmp_path, feat_rows=3)
    with pytest.raises(ValueError, match=r"row count of the \*_feat\.npy"):
        MMRecDataset(str(root), "toy")


def test_nan_features_are_rejected(tmp_path):
    feat = np.ones((4, 3), np.float32)
    feat[2, 1] = np.nan
    root = _write_mmrec(tmp_path, feat=feat)
    with pytest.raises(ValueError, match="NaN"):
        MMRecDataset(str(root), "toy")


def test_empty_split_is_rejected(tmp_path):
    root = _write_mmrec(tmp_path, labels=(0, 0, 1, 1))
    with pytest.raises(ValueError, match="test"):
        MMRecDataset(str(root), "toy")


def test_cli_errors_are_one_line(tmp_path, capsys):
    code = cli_main(["info", "--data-root", str(tmp_path), "--dataset", "nothing"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and err[0].startswith("error:")


@pytest.mark.parametrize("script", ["mf.py", "lightgcn.py"])
def test_example_errors_are_one_line(tmp_path, script):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / script),
            "evaluate",
            "--checkpoint",
            str(tmp_path / "missing.pt"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2
    assert lines == [f"error: checkpoint {tmp_path / 'missing.pt'} does not exist"]
