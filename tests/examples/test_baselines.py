"""The MF and LightGCN example scripts (the models are tested in tests/models/), and the
shared example harness driven through them."""

import argparse
import json

import pytest

from pyg_multirec.experiment import build_parser, run_example
from tests.helpers import load_example


@pytest.mark.parametrize("name", ["mf", "lightgcn"])
def test_reg_flags_reach_the_loss(tiny_data, name):
    example = load_example(name)
    parser = build_parser(name, example.add_arguments, None)
    default = example.build(tiny_data, parser.parse_args(["train"]))
    defaults = {"mf": ("norm", 1.0), "lightgcn": ("norm", 1e-3)}  # validated on ml100k
    assert (default.bpr.reg_form, default.bpr.reg_weight) == defaults[name]
    args = parser.parse_args(["train", "--reg-form", "norm", "--reg-weight", "0.5", "--dim", "8"])
    model = example.build(tiny_data, args)
    assert (model.bpr.reg_form, model.bpr.reg_weight) == ("norm", 0.5)
    assert model.embed()[1].shape == (tiny_data["item"].num_nodes, 8)
    old_checkpoint_config = argparse.Namespace(**{k: v for k, v in vars(args).items()
                                                  if k != "reg_form"})  # fmt: skip
    assert example.build(tiny_data, old_checkpoint_config).bpr.reg_form == "squared"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--reg-form", "l1"])
    shipped = build_parser(name, example.add_arguments, example.DEFAULTS)
    assert shipped.parse_args(["train"]).pair_sampling == "users"  # validated on ml100k
    assert shipped.parse_args(["train", "--pair-sampling", "edges"]).pair_sampling == "edges"


def test_example_cli_train_evaluate_recommend(tmp_path, capsys):
    lightgcn = load_example("lightgcn")
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
    mf = load_example("mf")

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
    sea = load_example("sea")
    argv = ["--epochs", "2", "--synthetic-users", "80", "--synthetic-items", "50",
            "--synthetic-interactions", "1000", "--club-steps", "1", "--out", str(tmp_path),
            "--quiet", "--plots"]  # fmt: skip
    run_example("sea", sea.build, sea.add_arguments, sea.DEFAULTS, argv=argv)
    for name in ("curves.png", "tsne.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_sea_part_representations_cover_every_modality(tiny_data):
    sea = load_example("sea")
    args = build_parser("sea", sea.add_arguments, sea.DEFAULTS).parse_args(["train"])
    model = sea.build(tiny_data, args)
    parts = model.part_representations()
    assert sorted(parts) == ["image/generic", "image/unique", "text/generic", "text/unique"]
    assert {p.shape for p in parts.values()} == {(150, model.separate.generic_maps[0].out_features)}
    linear = sea.build(tiny_data, build_parser("sea", sea.add_arguments, sea.DEFAULTS).parse_args(
        ["train", "--item-encoder", "linear"])).part_representations()  # the halves themselves
    assert all(p.shape == (150, args.dim // 2) for p in linear.values())
