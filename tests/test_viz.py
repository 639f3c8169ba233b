"""Tests of pyg_multirec/viz.py (skipped without matplotlib)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyg_multirec import viz
from pyg_multirec.cli import main

PNG_MAGIC = b"\x89PNG"


def history(epochs: int = 6) -> list[dict[str, float]]:
    return [
        {
            "epoch": e,
            "seconds": 0.1,
            "train_loss": 1.0 / e,
            "train_bpr": 0.8 / e,
            "valid_recall@20": 0.05 * e - 0.004 * e**2,
            "valid_ndcg@20": 0.02 * e,
        }
        for e in range(1, epochs + 1)
    ]


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:4] == PNG_MAGIC


def test_training_curves_from_list_json_csv(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows = history()
    assert_png(viz.plot_training_curves(rows, tmp_path / "a.png"))

    (tmp_path / "history.json").write_text(json.dumps(rows))
    out = viz.plot_training_curves(str(tmp_path / "history.json"), tmp_path / "sub" / "b.png")
    assert out == tmp_path / "sub" / "b.png"
    assert_png(out)

    with (tmp_path / "history.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert_png(viz.plot_training_curves(tmp_path / "history.csv", tmp_path / "c.png"))

    (tmp_path / "metrics.json").write_text(json.dumps({"model": "mf", "history": rows}))
    out = viz.plot_training_curves(tmp_path / "metrics.json", tmp_path / "d.pdf", "ndcg@20")
    assert out.read_bytes()[:4] == b"%PDF"


def test_training_curves_bad_inputs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match="history is empty"):
        viz.plot_training_curves([], out)
    with pytest.raises(ValueError, match="no 'valid_recall@20' in 6 epochs"):
        rows = [{k: v for k, v in r.items() if k != "valid_recall@20"} for r in history()]
        viz.plot_training_curves(rows, out)
    with pytest.raises(ValueError, match="no 'valid_hit@5'"):
        viz.plot_training_curves(history(), out, metric="hit@5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        viz.plot_training_curves(tmp_path / "missing.json", out)
    with pytest.raises(TypeError, match="list of per-epoch dicts"):
        viz.plot_training_curves(42, out)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be numbers"):
        viz.plot_training_curves([{"epoch": 1, "train_loss": "x", "valid_recall@20": 0.1}], out)
    assert not out.exists()


def representations(num_items: int = 30, dim: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(num_items, dim, generator=g)
    return {
        "image/generic": shared + 0.1 * torch.randn(num_items, dim, generator=g),
        "image/unique": torch.randn(num_items, dim, generator=g) + 4.0,
        "text/generic": (shared + 0.1 * torch.randn(num_items, dim, generator=g)).numpy(),
        "text/unique": torch.randn(num_items, dim, generator=g, requires_grad=True) - 4.0,
    }


def test_tsne_writes_file(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert_png(viz.plot_tsne(representations(), tmp_path / "t.png", max_points=60))


def test_tsne_subsamples_the_same_items_for_every_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    import sklearn.manifold

    seen = {}

    class FakeTSNE:
        def __init__(self, **kwargs: object) -> None:
            seen["kwargs"] = kwargs

        def fit_transform(self, x: np.ndarray) -> np.ndarray:
            seen["x"] = x
            return x[:, :2]

    monkeypatch.setattr(sklearn.manifold, "TSNE", FakeTSNE)
    reps = representations(num_items=30)
    viz.plot_tsne(reps, tmp_path / "t.png", max_points=41, seed=3)
    x = seen["x"]
    per_key = 41 // 4  # 10 items of the 30, for each of the 4 keys
    assert x.shape == (4 * per_key, 8)
    first = torch.as_tensor(reps["image/generic"]).double().numpy()
    rows = [int(np.flatnonzero((first == r).all(1))[0]) for r in x[:per_key]]
    assert len(set(rows)) == per_key
    for k, key in enumerate(reps):
        block = torch.as_tensor(reps[key]).detach().double().numpy()[rows]
        np.testing.assert_array_equal(x[k * per_key : (k + 1) * per_key], block)
    assert seen["kwargs"]["perplexity"] == pytest.approx((4 * per_key - 1) / 3)
    assert seen["kwargs"]["random_state"] == 3


def test_tsne_bad_inputs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "t.png"
    reps = representations()
    with pytest.raises(ValueError, match="non-empty dict"):
        viz.plot_tsne({}, out)
    with pytest.raises(ValueError, match="'generic' must look like 'modality/part'"):
        viz.plot_tsne({"generic": reps["image/generic"]}, out)
    with pytest.raises(ValueError, match="same shape"):
        viz.plot_tsne({"a/x": np.ones((5, 3)), "a/y": np.ones((5, 4))}, out)
    with pytest.raises(ValueError, match="must be 2-D"):
        viz.plot_tsne({"a/x": np.ones(5)}, out)
    with pytest.raises(ValueError, match="NaN"):
        viz.plot_tsne({"a/x": np.full((5, 2), np.nan)}, out)
    with pytest.raises(ValueError, match="max_points=7 leaves fewer than 2 points"):
        viz.plot_tsne(reps, out, max_points=7)
    assert not out.exists()


def test_missing_matplotlib_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install pyg_multirec\[viz\]"):
        viz.plot_training_curves(history(), tmp_path / "x.png")
    with pytest.raises(ImportError, match=r"pip install pyg_multirec\[viz\]"):
        viz.plot_tsne(representations(), tmp_path / "x.png")


def test_cli_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "history.json").write_text(json.dumps(history()))
    out = tmp_path / "curves.png"
    assert main(["plot", str(tmp_path / "history.json"), "--out", str(out)]) == 0
    assert_png(out)
    assert main(["plot", str(tmp_path / "nope.json"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: history file")
