import json

import pytest
from lightgcn import LightGCN

from pyg_multirec.experiment import build_parser, run_example
from pyg_multirec.train import train
from tests.helpers import baseline_recall


def test_lightgcn_learns(tiny_data):
    model = LightGCN(
        tiny_data["user"].num_nodes,
        tiny_data["item"].num_nodes,
        tiny_data["user", "train", "item"].edge_index,
        dim=16,
        num_layers=2,
    )
    result = train(
        model, tiny_data, epochs=30, batch_size=256, lr=0.01, patience=10, progress=False
    )
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_valid["recall@20"] > baseline_recall(tiny_data, kind="popular")


def test_example_cli_train_evaluate_recommend(tmp_path, capsys):
    import lightgcn

    out = tmp_path / "run"
    args = [
        "--epochs",
        "2",
        "--synthetic-users",
        "100",
        "--synthetic-items",
        "60",
        "--synthetic-interactions",
        "1500",
        "--out",
        str(out),
        "--quiet",
    ]
    result = run_example("lightgcn", lightgcn.build, lightgcn.add_arguments, argv=args)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["recall@20"] == pytest.approx(result.test["recall@20"])
    metrics = run_example(
        "lightgcn",
        lightgcn.build,
        lightgcn.add_arguments,
        argv=["evaluate", "--checkpoint", str(out / "best.pt")],
    )
    assert metrics["recall@20"] == pytest.approx(result.test["recall@20"])
    items = run_example(
        "lightgcn",
        lightgcn.build,
        lightgcn.add_arguments,
        argv=["recommend", "--checkpoint", str(out / "best.pt"), "--user", "0"],
    )
    assert len(items) == 10 and len(set(items)) == 10
    with pytest.raises(SystemExit) as err:
        run_example(
            "lightgcn",
            lightgcn.build,
            lightgcn.add_arguments,
            argv=["recommend", "--checkpoint", str(out / "best.pt"), "--user", "999"],
        )
    assert err.value.code == 2
    assert "out of range" in capsys.readouterr().err


def test_mf_runs_on_real_data(ml100k_root, tmp_path):
    import mf

    result = run_example(
        "mf",
        mf.build,
        mf.add_arguments,
        argv=[
            "--dataset",
            "ml100k",
            "--data-root",
            str(ml100k_root),
            "--epochs",
            "1",
            "--max-batches",
            "5",
            "--out",
            str(tmp_path),
            "--quiet",
        ],
    )
    assert 0.0 < result.test["recall@20"] <= 1.0
    assert result.test["num_rows"] == 943


def test_plots_flag_writes_curves_and_tsne(tmp_path):
    pytest.importorskip("matplotlib")
    import sea

    argv = ["--epochs", "2", "--synthetic-users", "80", "--synthetic-items", "50",
            "--synthetic-interactions", "1000", "--club-steps", "1", "--out", str(tmp_path),
            "--quiet", "--plots"]  # fmt: skip
    run_example("sea", sea.build, sea.add_arguments, sea.DEFAULTS, argv=argv)
    for name in ("curves.png", "tsne.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_sea_part_representations_cover_every_modality(tiny_data):
    import sea

    args = build_parser("sea", sea.add_arguments, sea.DEFAULTS).parse_args(["train"])
    model = sea.build(tiny_data, args)
    parts = model.part_representations()
    assert sorted(parts) == ["image/generic", "image/unique", "text/generic", "text/unique"]
    assert {p.shape for p in parts.values()} == {(150, model.separate.generic_maps[0].out_features)}
    linear = sea.build(tiny_data, build_parser("sea", sea.add_arguments, sea.DEFAULTS).parse_args(
        ["train", "--item-encoder", "linear"])).part_representations()  # the halves themselves
    assert all(p.shape == (150, args.dim // 2) for p in linear.values())
