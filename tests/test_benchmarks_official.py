"""The helpers of ``benchmarks/official/``: log parsing (MMRec and MICRO formats), the export of
our splits into MICRO's JSON files, SEA's user graph, the runner's overrides and the plot
table. The official code itself is not needed (nor fetched) here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pyg_multirec.datasets import cold_start_split, load_dataset
from pyg_multirec.datasets.validation import split_edge_type
from tests.helpers import load_script

OFFICIAL_TOOLS = Path(__file__).resolve().parents[1] / "benchmarks" / "official"


def _import(name: str):
    """The script ``benchmarks/official/{name}.py`` by path (``parse_logs`` first, under its
    own name, for the scripts that import it)."""
    load_script(OFFICIAL_TOOLS / "parse_logs.py")
    return load_script(OFFICIAL_TOOLS / f"{name}.py")


MMREC_LOG = """\
28 Nov 17:56    INFO =========1/2: Parameters:['seed', 'reg_weight']=(999, 1.0)=======
28 Nov 17:56    INFO epoch 0 training [time: 0.27s, train loss: 27.7832]
28 Nov 17:56    INFO epoch 0 evaluating [time: 0.12s, valid_score: 0.010300]
28 Nov 17:56    INFO valid result:
recall@10: 0.0039    recall@20: 0.0103    ndcg@20: 0.0081
28 Nov 17:56    INFO test result:
recall@10: 0.0062    recall@20: 0.0111    ndcg@20: 0.0094
28 Nov 17:56    INFO epoch 1 training [time: 0.45s, train loss: 27.5843]
28 Nov 17:56    INFO epoch 1 evaluating [time: 0.15s, valid_score: 0.017200]
28 Nov 17:56    INFO valid result:
recall@10: 0.0068    recall@20: 0.0172    ndcg@20: 0.0140
28 Nov 17:56    INFO test result:
recall@10: 0.0079    recall@20: 0.0161    ndcg@20: 0.0138
28 Nov 17:56    INFO best valid result: recall@10: 0.0068    recall@20: 0.0172
28 Nov 17:56    INFO test result: recall@10: 0.0079    recall@20: 0.0161
28 Nov 17:56    INFO =========2/2: Parameters:['seed', 'reg_weight']=(999, 0.1)=======
28 Nov 17:56    INFO epoch 0 training [time: 0.30s, train loss: 20.0000]
28 Nov 17:56    INFO epoch 0 evaluating [time: 0.12s, valid_score: 0.020000]
28 Nov 17:56    INFO valid result:
recall@10: 0.0100    recall@20: 0.0200    ndcg@20: 0.0150
28 Nov 17:56    INFO test result:
recall@10: 0.0090    recall@20: 0.0190    ndcg@20: 0.0140
"""

MICRO_LOG = """\
n_users=943, n_items=1349
2026-11-28 18:02:  Epoch 0 [41.2s + 2.0s]: train==[83.03931=53.33493 + 0.00089 + 0.00000], \
recall=[0.06259, 0.09579], precision=[0.03489, 0.03065], hit=[0.26617, 0.40615], \
ndcg=[0.12346, 0.17135]
2026-11-28 18:02:  Test_Recall@20: 0.08276
2026-11-28 18:03:  Epoch 1 [40.0s]: train==[80.0=50.0 + 0.001 + 0.00000]
2026-11-28 18:03:  Epoch 2 [42.9s + 2.0s]: train==[79.69554=50.09370 + 0.00099 + 0.00000], \
recall=[0.05000, 0.09000], precision=[0.04602, 0.03722], hit=[0.31177, 0.44857], \
ndcg=[0.15914, 0.20870]
2026-11-28 18:03:  #####Early stopping steps: 1 #####
"""


def test_parse_mmrec_log(tmp_path):
    parse_logs = _import("parse_logs")
    log = tmp_path / "bpr.log"
    log.write_text(MMREC_LOG)
    records = parse_logs.parse_log(log)
    assert [r["epoch"] for r in records] == [1, 2, 1]  # 1-based, per configuration
    assert records[0]["valid_recall@20"] == pytest.approx(0.0103)
    assert records[0]["test_recall@20"] == pytest.approx(0.0111)
    assert records[1]["valid_ndcg@20"] == pytest.approx(0.0140)
    assert records[1]["train_loss"] == pytest.approx(27.5843)
    assert records[1]["train_seconds"] == pytest.approx(0.45)
    # the same-line summary after training does not overwrite epoch 2's test figures
    assert records[1]["test_recall@20"] == pytest.approx(0.0161)
    assert records[0]["config"] == "['seed', 'reg_weight']=(999, 1.0)"
    assert records[2]["config"] == "['seed', 'reg_weight']=(999, 0.1)"
    best = parse_logs.best_epoch(records)
    assert best["valid_recall@20"] == pytest.approx(0.02) and best["epoch"] == 1
    table = parse_logs.table([str(log)]).splitlines()
    assert table[2] == (
        "| bpr | ['seed', 'reg_weight']=(999, 1.0) | 2 | 2 | 0.0172 | 0.0140 | 0.0161 | 0.0138 |"
    )
    assert table[3].startswith("| bpr | ['seed', 'reg_weight']=(999, 0.1) | 1 | 1 | 0.0200 |")


def test_parse_micro_log(tmp_path):
    parse_logs = _import("parse_logs")
    log = tmp_path / "micro.log"
    log.write_text(MICRO_LOG)
    assert parse_logs.detect_format(MICRO_LOG) == "micro"
    records = parse_logs.parse_log(log)
    assert [r["epoch"] for r in records] == [1, 3]  # the epoch without evaluation is skipped
    first, last = records
    assert first["valid_recall@10"] == pytest.approx(0.06259)
    assert first["valid_recall@20"] == pytest.approx(0.09579)
    assert first["valid_ndcg@20"] == pytest.approx(0.17135)
    assert first["test_recall@20"] == pytest.approx(0.08276)
    assert first["eval_seconds"] == pytest.approx(2.0)
    assert "test_recall@20" not in last  # MICRO tests only when validation improves
    assert parse_logs.best_epoch(records) is first


def test_parse_unknown_format(tmp_path):
    parse_logs = _import("parse_logs")
    log = tmp_path / "x.log"
    log.write_text("Traceback (most recent call last):\n")
    with pytest.raises(ValueError, match="unknown log format"):
        parse_logs.parse_log(log)
    assert parse_logs.parse_log(log, "mmrec") == []
    with pytest.raises(ValueError, match="fmt must be one of"):
        parse_logs.parse_log(log, "csv")


def test_micro_export_matches_our_splits(tmp_path):
    prepare_data = _import("prepare_data")
    data = load_dataset("synthetic", num_users=40, num_items=30, num_interactions=400, seed=3)
    cold = cold_start_split(data, seed=0)
    for source, folder in ((data, tmp_path / "warm"), (cold, tmp_path / "cold")):
        counts = prepare_data.write_micro_split(source, folder)
        for split, file_name in prepare_data.MICRO_SPLIT_FILES.items():
            table = json.loads((folder / file_name).read_text())
            assert set(table) == {str(u) for u in range(source["user"].num_nodes)}
            pairs = {(int(u), i) for u, items in table.items() for i in items}
            edge_index = source[split_edge_type(split)].edge_index
            assert pairs == set(map(tuple, edge_index.t().tolist()))
            assert counts[split] == edge_index.size(1)
    cold_items = set(torch.nonzero(cold["item"].cold_mask).flatten().tolist())
    train = json.loads((tmp_path / "cold" / "train.json").read_text())
    assert cold_items and not cold_items & {i for items in train.values() for i in items}


def test_user_graph_dict_by_hand():
    prepare_data = _import("prepare_data")
    # users 0 and 1 share items 0 and 1; users 1 and 2 share item 2; user 3 shares nothing
    train = torch.tensor([[0, 0, 1, 1, 1, 2, 3], [0, 1, 0, 1, 2, 2, 3]])
    graph = prepare_data.user_graph_dict(train, num_users=4)
    assert graph[0] == [[1], [2.0]]
    assert graph[1] == [[0, 2], [2.0, 1.0]]
    assert graph[2] == [[1], [1.0]]
    assert graph[3] == [[], []]


def test_runner_overrides():
    run_mmrec = _import("run_mmrec")
    parsed = run_mmrec.parse_overrides(
        ["reg_weight=[1e-3]", "n_layers=[2]", "use_gpu=False", "epochs=3", "name=ml100k"]
    )
    assert parsed == {
        "reg_weight": [0.001], "n_layers": [2], "use_gpu": False, "epochs": 3, "name": "ml100k"
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        run_mmrec.parse_overrides(["epochs"])


def test_side_by_side_table_reads_our_metrics(tmp_path):
    plot = _import("plot_side_by_side")
    ours = tmp_path / "ours"
    ours.mkdir()
    history = [
        {"epoch": 1, "valid_recall@20": 0.10},
        {"epoch": 2, "valid_recall@20": 0.12},
        {"epoch": 3, "valid_recall@20": 0.11},
    ]
    (ours / "history.json").write_text(json.dumps(history))
    (ours / "metrics.json").write_text(json.dumps({"test": {"recall@20": 0.095}}))
    official = tmp_path / "sea.json"
    official.write_text(json.dumps([{"epoch": 1, "valid_recall@20": 0.2, "test_recall@20": 0.15}]))
    panels = [("SEA", plot.curve(str(official)), plot.curve(str(ours / "history.json")))]
    table = plot.table(panels)
    assert "| SEA | official | 1 | 1 | 0.2000 | 0.1500 |" in table
    assert "| SEA | ours | 3 | 2 | 0.1200 | 0.0950 |" in table
    assert plot.curve("-") is None
    assert plot.curve_or_warn(str(tmp_path / "missing.json")) is None


def test_synthetic_export_matches_the_example_data(tmp_path):
    _import("prepare_data")  # export_synthetic imports it by name
    export_synthetic = _import("export_synthetic")
    folder = export_synthetic.export(tmp_path, seed=1)
    prints = export_synthetic.check(tmp_path, seed=1)  # files vs a fresh build of the data
    cold = prints["0-core"]
    # the data of `examples/micro.py train --cold-start --seed 1`, built here independently
    data = cold_start_split(
        load_dataset("synthetic", num_users=1000, num_items=500, num_interactions=20000, seed=1),
        seed=1,
    )
    assert (cold["num_users"], cold["num_items"]) == (1000, 500)
    train = json.loads((folder / "0-core" / "train.json").read_text())
    pairs = {(int(u), i) for u, items in train.items() for i in items}
    assert pairs == set(map(tuple, data[split_edge_type("train")].edge_index.t().tolist()))
    info = json.loads((folder / "0-core" / "cold_start_info.json").read_text())
    cold_items = set(torch.nonzero(data["item"].cold_mask).flatten().tolist())
    assert set(info["cold_valid_items"]) | set(info["cold_test_items"]) <= cold_items
    assert not set(info["cold_valid_items"]) & set(info["cold_test_items"])
    for modality, dim in (("image", 64), ("text", 32)):
        written = torch.from_numpy(np.load(folder / f"{modality}_feat.npy"))
        assert written.shape == (500, dim)
        assert torch.equal(written, data["item"][f"{modality}_feat"].float())
    # a missing pair, or another seed's data, is caught
    val = json.loads((folder / "0-core" / "val.json").read_text())
    user = next(u for u, items in val.items() if items)
    val[user] = val[user][1:]
    (folder / "0-core" / "val.json").write_text(json.dumps(val))
    with pytest.raises(ValueError, match="differs from the harness"):
        export_synthetic.check(tmp_path, seed=1)
    (folder.parent / export_synthetic.dataset_name(2)).symlink_to(folder)
    with pytest.raises(ValueError, match="differs from the harness"):
        export_synthetic.check(tmp_path, seed=2)


def test_synthetic_export_layout_check(tmp_path):
    _import("prepare_data")
    export_synthetic = _import("export_synthetic")
    folder = tmp_path / "d"
    (folder / "0-core").mkdir(parents=True)
    np.save(folder / "image_feat.npy", np.zeros((3, 2), dtype=np.float32))
    np.save(folder / "text_feat.npy", np.zeros((3, 1), dtype=np.float32))
    splits = {"train.json": {"0": [0], "1": [1]}, "val.json": {"0": [1]}, "test.json": {"1": []}}
    for name, table in splits.items():
        (folder / "0-core" / name).write_text(json.dumps(table))
    # item 2 appears in no file: the official loader would see 2 items, the features have 3
    with pytest.raises(ValueError, match="would see 2 items"):
        export_synthetic.check_layout(folder, "0-core")
    splits["test.json"] = {"2": [2]}  # user 2 has no training pair
    (folder / "0-core" / "test.json").write_text(json.dumps(splits["test.json"]))
    with pytest.raises(ValueError, match="users without training pairs"):
        export_synthetic.check_layout(folder, "0-core")
    splits["test.json"] = {"1": [2]}
    (folder / "0-core" / "test.json").write_text(json.dumps(splits["test.json"]))
    export_synthetic.check_layout(folder, "0-core")


def test_summarize_micro_runs(tmp_path):
    summarize_runs = _import("summarize_runs")
    namespace = "2026-11-28 18:01:  Namespace(data_path='../data/', seed=0, epoch=1000, lr=1e-05)\n"
    done, cut = tmp_path / "cold_s0.log", tmp_path / "cold_s1.log"
    done.write_text(namespace + MICRO_LOG + "2026-11-28 18:04:  #####Early stop! #####\n")
    cut.write_text(namespace + MICRO_LOG)  # no early stop, no final dict: still running
    out = summarize_runs.summarize([done, cut])
    first, second = out["runs"]
    assert first["complete"] and first["early_stopped"] and not second["complete"]
    assert (first["seed"], first["lr"], first["max_epochs"]) == (0, 1e-5, 1000)
    assert (first["best_epoch"], first["epochs_run"]) == (1, 2)
    assert first["valid_recall_at_20"] == pytest.approx(0.09579)
    assert first["test_recall_at_20"] == pytest.approx(0.08276)
    assert first["train_s_per_epoch"] == pytest.approx((41.2 + 42.9) / 2, abs=1e-3)
    group = out["summary"]["cold"]
    assert group["seeds_complete"] == [0] and group["seeds_cut"] == [1]
    assert group["test_recall_at_20"] == {"mean": 0.0828, "std": 0.0, "n": 1}
    curves = summarize_runs.curves([done])["cold_s0"]
    assert curves == {
        "epoch": [1, 3], "valid_recall@20": [0.09579, 0.09], "test_recall@20": [[1, 0.08276]]
    }


def test_micro_ml100k_table(tmp_path):
    pytest.importorskip("scipy")
    from scipy.stats import ttest_rel

    table_script = _import("micro_ml100k_table")
    (tmp_path / "official").mkdir()
    official_test = {0: 0.08276, 1: 0.05}
    for seed, test in official_test.items():
        log = MICRO_LOG.replace("0.08276", str(test))
        (tmp_path / "official" / f"micro_cold_s{seed}.log").write_text(log)
    ours_test = {0: 0.1, 1: 0.07}
    for seed, test in ours_test.items():
        run = tmp_path / "ours" / f"cold-defaults-s{seed}"
        run.mkdir(parents=True)
        metrics = {"best_valid": {"recall@20": 0.2}, "test": {"recall@20": test}, "best_epoch": 4}
        (run / "metrics.json").write_text(json.dumps(metrics))
        (run / "history.json").write_text(json.dumps([{"epoch": e} for e in range(1, 25)]))
    groups = {
        **table_script.official_runs(tmp_path / "official"),
        **table_script.our_runs(tmp_path / "ours"),
    }
    assert groups["official micro_cold"][1] == {
        "valid": pytest.approx(0.09579), "test": pytest.approx(0.05), "best_epoch": 1, "epochs": 2
    }
    assert groups["cold-defaults"][0] == {"valid": 0.2, "test": 0.1, "best_epoch": 4, "epochs": 24}
    lines = table_script.table(groups, ["official micro_cold"]).splitlines()
    expected_p = ttest_rel([0.1, 0.07], [0.08276, 0.05]).pvalue
    ours_row = next(line for line in lines if line.startswith("| cold-defaults (seeds 0,1)"))
    assert "| 0.0850 ± 0.0212 |" in ours_row and "0.1000 (4/24) / 0.0700 (4/24)" in ours_row
    assert ours_row.endswith(f"| {expected_p:.3f} |")
    official_row = next(line for line in lines if line.startswith("| official micro_cold"))
    assert official_row.startswith("| official micro_cold (seed 123; cold splits 0,1) |")
    assert official_row.endswith("| - |")  # the reference is not tested against itself
    # warm: no suffix is the code's seed 123, _seedN its --seed N; never paired with ours by seed
    (tmp_path / "official" / "micro_warm.log").write_text(MICRO_LOG)
    seed0 = MICRO_LOG.replace("0.08276", "0.07")
    (tmp_path / "official" / "micro_warm_seed0.log").write_text(seed0)
    warm = table_script.official_runs(tmp_path / "official")["official micro_warm"]
    assert sorted(warm) == [0, 123] and warm[0]["test"] == pytest.approx(0.07)
    ours = {"official micro_warm": warm, "warm-defaults": groups["cold-defaults"]}  # seeds 0, 1
    row = table_script.table(ours, ["warm-defaults"]).splitlines()[2]
    assert row.startswith("| official micro_warm (seeds 0,123) |") and row.endswith("| - |")
