"""The benchmark scripts: a ``--quick`` smoke run of each (in subprocesses, started together),
their JSON output, their dense / raw references against independent computations, and the
shared helpers."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import load_benchmark

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
SCRIPTS = ("conv", "knn", "sea_gradients", "infonce")
QUICK_TIMEOUT_S = 300
# Optional comparisons to exercise in the quick runs: infonce.py against its own source file
# (so identical results) and with 16-row CPU blocks.
QUICK_EXTRA = {"infonce": ["--cpu-rows", "16", "--against",
                           str(REPO / "pyg_multirec" / "losses" / "infonce.py")]}
MIB = 1 << 20


#: The scripts import the installed pyg_multirec; in a subprocess, make it this checkout's.
CHECKOUT_ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Starts ``--quick`` runs of all scripts at once (they are mostly process start-up),
    then collects them: ``{script: (returncode, stdout, payload or None)}``."""
    out_dir = tmp_path_factory.mktemp("bench")
    procs = {}
    for script in SCRIPTS:
        out = out_dir / f"{script}.json"
        command = [sys.executable, str(BENCHMARKS / f"{script}.py"), "--quick", "--out", str(out),
                   *QUICK_EXTRA.get(script, [])]
        procs[script] = (
            subprocess.Popen(command, cwd=REPO, env=CHECKOUT_ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True),
            out,
        )
    runs = {}
    for script, (proc, out) in procs.items():
        stdout, _ = proc.communicate(timeout=QUICK_TIMEOUT_S)
        payload = json.loads(out.read_text()) if out.is_file() else None
        runs[script] = (proc.returncode, stdout, payload)
    return runs


def _check_common_payload(payload, script):
    assert payload["script"] == script
    assert payload["quick"] is True
    env = payload["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert env["torch_num_threads"] >= 1
    assert payload["results"], "no results"


def test_conv_quick_run_writes_consistent_json(quick_runs):
    returncode, stdout, payload = quick_runs["conv"]
    assert returncode == 0, stdout
    assert "| scale | layers |" in stdout and "all targets met:" in stdout
    _check_common_payload(payload, "conv")
    conv = load_benchmark("conv")
    assert [e["num_layers"] for e in payload["results"]] == list(conv.NUM_LAYERS)
    for e in payload["results"]:
        assert e["scale"] == "quick" and e["embedding_dim"] == 64
        assert e["num_directed_edges"] == 2 * e["num_train_interactions"]
        assert e["num_nodes"] == e["num_users"] + e["num_items"]
        assert set(e["median_s"]) == set(conv.METHODS)
        for name in conv.METHODS:
            times = e["times_s"][name]
            assert len(times) == payload["repeats"] and all(t > 0 for t in times)
            assert e["median_s"][name] == pytest.approx(statistics.median(times))
        med = e["median_s"]
        assert e["speedup_vs_LGConv"] == pytest.approx(med["LGConv"] / med["LightGCNConv"])
        assert e["ratio_vs_spmm"] == pytest.approx(med["LightGCNConv"] / med["spmm"])
        assert e["meets_speedup_target"] == (e["speedup_vs_LGConv"] >= 3.0)
        assert e["meets_spmm_target"] == (e["ratio_vs_spmm"] <= 1.2)
        assert e["max_abs_disagreement"] <= conv.AGREEMENT_ATOL


def test_knn_quick_run_writes_consistent_json(quick_runs):
    returncode, stdout, payload = quick_runs["knn"]
    assert returncode == 0, stdout
    assert "| scale | items | workload |" in stdout
    _check_common_payload(payload, "knn")
    knn = load_benchmark("knn")
    (entry,) = payload["results"]
    assert entry["feature_dim"] == 4096 and entry["k"] == 10
    assert set(entry["cases"]) == set(knn.CASES)
    for case in knn.CASES:
        result = entry["cases"][case]
        assert result["num_items"] == entry["num_items"]
        assert len(result["times_s"]) == (
            payload["build_repeats"] if case.startswith("build") else payload["repeats"]
        )
        assert result["peak_extra_bytes"] >= 0 and result["baseline_bytes"] > 0
        assert result["peak_reset"] is True  # Linux: VmHWM was reset after loading
    for workload in knn.WORKLOADS:
        ours = entry["cases"][f"{workload}-ours"]
        dense = entry["cases"][f"{workload}-dense"]
        ratios = entry[workload]
        assert ratios["results_agree"] is True, (ours["summary"], dense["summary"])
        assert ratios["time_ratio"] == pytest.approx(ours["median_s"] / dense["median_s"])
        assert ratios["cpu_time_ratio"] == pytest.approx(
            ours["median_cpu_s"] / dense["median_cpu_s"]
        )
        assert ratios["memory_ratio"] == pytest.approx(
            ours["peak_extra_bytes"] / dense["peak_extra_bytes"]
        )
    # nnz of the k-NN graph: at most k per item (zeros after suppression are dropped)
    assert 0 < entry["cases"]["build-ours"]["summary"]["nnz"] <= entry["num_items"] * 10
    assert payload["targets_met_at_target_scale"] is None  # Clothing was not run


def test_infonce_quick_run_writes_consistent_json(quick_runs):
    returncode, stdout, payload = quick_runs["infonce"]
    assert returncode == 0, stdout
    assert "| items | cache_bytes | kept MiB |" in stdout
    _check_common_payload(payload, "infonce")
    rows = {r["cache_bytes"]: r for r in payload["results"]}
    assert {r["items"] for r in rows.values()} == {120}
    assert set(rows) == {"recompute (0)", "default (64 MiB)", "all",
                         "default, 16-row CPU blocks", "default, infonce.py"}
    # kept and recomputed blocks give the same loss and gradients, bit for bit; so does the
    # same source file loaded again
    for name in ("recompute (0)", "default (64 MiB)", "all", "default, infonce.py"):
        assert rows[name]["bitwise_same"] and rows[name]["max_rel_diff"] == 0
    assert rows["recompute (0)"]["kept_mib"] == 0 and rows["recompute (0)"]["speedup"] == 1
    assert rows["all"]["kept_mib"] == rows["all"]["all_blocks_mib"] > 0
    assert rows["default, infonce.py"]["kept_mib"] is None  # unknown for another version
    # smaller blocks: a finer triangle of the symmetric matrices (fewer bytes), all kept, and
    # the same values up to the order of the sums
    small = rows["default, 16-row CPU blocks"]
    assert small["kept_mib"] == small["all_blocks_mib"] < rows["all"]["all_blocks_mib"]
    assert 0 <= small["max_rel_diff"] < 1e-5
    assert all(r["seconds"] > 0 for r in rows.values())


def test_infonce_rejects_bad_comparisons(tmp_path):
    infonce = load_benchmark("infonce")
    with pytest.raises(FileNotFoundError, match="--against: no such file"):
        infonce.main(["--quick", "--against", str(tmp_path / "missing.py"),
                      "--out", str(tmp_path / "out.json")])
    (tmp_path / "other.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines no MultiModalInfoNCE"):
        infonce.main(["--quick", "--against", str(tmp_path / "other.py"),
                      "--out", str(tmp_path / "out.json")])
    with pytest.raises(ValueError, match="--cpu-rows must be positive"):
        infonce.main(["--quick", "--cpu-rows", "128,0", "--out", str(tmp_path / "out.json")])


@pytest.mark.parametrize("num, num_modal", [(7, 1), (10, 2)])
def test_infonce_block_bytes_closed_forms(num, num_modal):
    infonce = load_benchmark("infonce")
    # one block: M + 1 more (N, N) from column 0 and M full (N, N)
    assert sum(infonce.block_bytes(num, num, num_modal, 4)) == (2 * num_modal + 1) * num**2 * 4
    # one row per block: M rows of N, and M + 1 rows of N - i from the diagonal on
    triangle = num * (num + 1) // 2
    expected = (num_modal * num * num + (num_modal + 1) * triangle) * 8
    assert sum(infonce.block_bytes(num, 1, num_modal, 8)) == expected


@pytest.mark.parametrize("budget", [0, 100, 1000, 1 << 20])
def test_infonce_kept_bytes_match_the_loss(monkeypatch, budget):
    """The benchmark's count of kept bytes equals what MultiModalInfoNCE really keeps."""
    from pyg_multirec.losses import MultiModalInfoNCE
    from pyg_multirec.losses import infonce as loss_module

    kept = []

    class Recorded(loss_module._Blocks):
        def __init__(self, z, block, budget):
            super().__init__(z, block, budget)
            kept.append(self.kept)

    monkeypatch.setattr(loss_module, "_Blocks", Recorded)
    num, block = 11, 4
    views = [torch.randn(num, 3, requires_grad=True) for _ in range(3)]
    MultiModalInfoNCE(block_size=block, cache_bytes=budget)(views[:2], views[2])
    real = sum(t.numel() * t.element_size() for t in kept[0] if t is not None)
    bench = load_benchmark("infonce")
    assert bench.kept_bytes(bench.block_bytes(num, block, 2, 4), budget) == real


def test_sea_gradients_quick_run_writes_consistent_json(quick_runs):
    returncode, stdout, payload = quick_runs["sea_gradients"]
    assert returncode == 0, stdout
    assert "| epoch | valid R@20 | steps | norm g_bpr |" in stdout
    _check_common_payload(payload, "sea_gradients")
    assert payload["weights"]["align"] == "solosim" and payload["weights"]["distance"] == "club"
    assert sorted({r["epoch"] for r in payload["results"]}) == [1, 2]
    for record in payload["results"]:
        parts = record["parts"]
        assert set(parts) == {"all", "image", "text", "generic", "unique"}
        for values in parts.values():
            for term in ("align", "distance"):
                assert values[f"{term}_ratio"] == pytest.approx(
                    values[f"{term}_norm"] / values["bpr_norm"]
                )
                assert -1.0 - 1e-6 <= values[f"{term}_cos"] <= 1.0 + 1e-6
        # the alignment term sees only the generic halves: no gradient on the unique rows
        assert parts["unique"]["align_norm"] == 0.0 and parts["generic"]["align_norm"] > 0
        for key in ("bpr_norm", "align_norm", "distance_norm"):  # halves, modalities: disjoint
            whole = parts["all"][key] ** 2
            assert parts["generic"][key] ** 2 + parts["unique"][key] ** 2 == pytest.approx(whole)
            assert parts["image"][key] ** 2 + parts["text"][key] ** 2 == pytest.approx(whole)


def test_sea_gradients_terms_add_up_to_the_loss_gradient():
    """The per-term gradients of the probe are those of the terms the trainer sums."""
    from pyg_multirec.experiment import load_data

    bench = load_benchmark("sea_gradients")
    sea, config = bench.sea_args([*bench.QUICK_DATA, "--alpha", "0.5", "--beta", "0.3"])
    torch.manual_seed(0)
    data = load_data(config)
    model = sea.build(data, config)
    model.train()
    edges = data["user", "train", "item"].edge_index[:, :64]
    neg = torch.randint(0, data["item"].num_nodes, (64,))
    terms = model.loss(edges[0], edges[1], neg)
    params = [p for proj in model.item_proj for p in proj.parameters()]
    grads = bench.term_gradients(model, terms, params)
    assert set(grads) == {"bpr", "align", "distance"}
    terms["loss"].backward()
    for i, p in enumerate(params):
        total = sum(grads[name][i] for name in grads)
        torch.testing.assert_close(total, p.grad)
    assert all(float(g.norm()) > 0 for name in grads for g in grads[name][:1])


# ----------------------------------------------------------------------------------------
# the references inside the scripts
def test_conv_references_match_an_explicit_propagation():
    conv = load_benchmark("conv")
    gen = torch.Generator().manual_seed(0)
    num_users, num_items = 7, 5
    pairs = torch.stack([torch.randint(0, num_users, (20,), generator=gen),
                         torch.randint(0, num_items, (20,), generator=gen)]).unique(dim=1)
    from pyg_multirec.nn import bipartite_to_homogeneous

    edge_index = bipartite_to_homogeneous(pairs, num_users, num_items)
    n = num_users + num_items
    dense = torch.zeros(n, n)
    dense[edge_index[1], edge_index[0]] = 1.0
    deg = dense.sum(1)
    inv = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    expected = inv[:, None] * dense * inv[None, :]
    adj = conv.normalized_csr(edge_index, n)
    torch.testing.assert_close(adj.to_dense(), expected)
    torch.testing.assert_close(conv.csr_transpose(adj).to_dense(), expected.t())

    x = torch.randn(n, 4, generator=gen, requires_grad=True)
    steps, setup = conv.make_steps(edge_index, n, x, num_layers=2)
    assert set(steps) == set(conv.METHODS) and set(setup) == set(conv.METHODS)
    for step in steps.values():
        x.grad = None
        out = step()
        torch.testing.assert_close(out, expected @ (expected @ x))
        torch.testing.assert_close(x.grad, (expected.t() @ expected.t()).sum(1)[:, None]
                                   .expand(n, 4))
    assert conv.max_disagreement(steps, x) < 1e-5


def test_dense_knn_reference_matches_the_library():
    knn = load_benchmark("knn")
    from pyg_multirec.nn import knn_item_graph

    x = torch.randn(40, 16, generator=torch.Generator().manual_seed(1))
    k = 4
    # independent: explicit loops over rows
    unit = x / x.norm(dim=1, keepdim=True)
    sim = unit @ unit.t()
    s_hat = torch.zeros_like(sim)
    for i in range(sim.size(0)):
        top = sim[i].topk(k)
        s_hat[i, top.indices] = top.values.clamp_min(0)
    deg = s_hat.sum(1)
    inv = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    expected = inv[:, None] * s_hat * inv[None, :]
    dense = knn.dense_knn_graph(x, k)
    torch.testing.assert_close(dense, expected)
    edge_index, edge_weight = knn_item_graph(x, k)
    ours = torch.zeros_like(dense)
    ours[edge_index[1], edge_index[0]] = edge_weight
    torch.testing.assert_close(ours, dense)


def test_knn_step_cases_agree_in_loss_and_gradients(tmp_path):
    knn = load_benchmark("knn")
    from pyg_multirec.nn import knn_item_graph

    x = torch.randn(60, 32, generator=torch.Generator().manual_seed(2))
    graph = tmp_path / "graph.pt"
    torch.save(knn_item_graph(x, 5), graph)
    summaries = {}
    for method in knn.METHODS:
        step, setup = knn._step_case(method, x, 5, seed=0, graph_file=graph)
        setup()
        summaries[method] = step()
    assert summaries["ours"] == pytest.approx(summaries["dense"], rel=1e-4)
    assert set(knn.AGREEMENT_KEYS) >= set(summaries["ours"]) - {"loss"}
    assert knn._agree(summaries["ours"], summaries["dense"])
    assert not knn._agree(summaries["ours"], {**summaries["dense"], "output_norm": -1.0})
    assert summaries["ours"]["transform_grad_norm"] > 0


def test_knn_case_mode_errors():
    knn = load_benchmark("knn")
    with pytest.raises(ValueError, match="--case must list some of"):
        knn.main(["--case", "build-sparse", "--features", __file__])
    with pytest.raises(FileNotFoundError, match="--case needs --features FILE"):
        knn.main(["--case", "build-ours", "--features", "/nonexistent.pt"])
    with pytest.raises(ValueError, match="--case needs --graph FILE"):
        knn.main(["--case", "build-ours", "--features", __file__])
    with pytest.raises(ValueError, match="--build-repeats must be >= 1"):
        knn.main(["--quick", "--build-repeats", "0"])


def test_conv_argument_errors():
    conv = load_benchmark("conv")
    with pytest.raises(ValueError, match="--scales must name some of"):
        conv.main(["--scales", "baby,movies"])
    with pytest.raises(ValueError, match="--repeats must be >= 1"):
        conv.main(["--repeats", "0"])
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        conv.main(["--threads", "0"])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda was given"):
            conv.main(["--device", "cuda"])


# ----------------------------------------------------------------------------------------
# shared helpers
def test_scales_are_the_papers_data_sets():
    common = load_benchmark("_common")
    sizes = {s.name: (s.num_users, s.num_items, s.num_interactions)
             for s in common.parse_scales("baby, Sports,clothing", quick=False)}
    assert sizes == {
        "baby": (19_445, 7_050, 160_792),
        "sports": (35_598, 18_357, 296_337),
        "clothing": (39_387, 23_033, 278_677),
    }
    assert common.parse_scales("baby", quick=True) == [common.QUICK_SCALE]


def test_peak_memory_sees_a_large_temporary_allocation():
    common = load_benchmark("_common")
    with common.PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(64 * MIB // 4)  # 64 MiB, touched
        del block
    assert memory.peak_was_reset
    assert 60 * MIB <= memory.peak_extra_bytes <= 200 * MIB
    with common.PeakMemory(torch.device("cpu")) as small:
        torch.ones(16)
    assert small.peak_extra_bytes < 16 * MIB  # the earlier peak was reset


def test_interleaved_timings_and_median():
    common = load_benchmark("_common")
    calls = []
    times = common.interleaved_timings(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        torch.device("cpu"), repeats=3, warmup=2, before_each=lambda: calls.append("-"),
    )
    assert calls == ["-", "a", "-", "b"] * 5  # round-robin, warm-up rounds included
    assert {name: len(values) for name, values in times.items()} == {"a": 3, "b": 3}
    assert common.median([3.0, 1.0, 2.0]) == 2.0


def test_markdown_table_and_merge(tmp_path):
    common = load_benchmark("_common")
    text = common.markdown_table(["a", "b", "ok"], [["x", 1.23456, True], ["y", 2, False]])
    assert text.splitlines() == [
        "| a | b | ok |", "|---|---|---|", "| x | 1.23 | yes |", "| y | 2 | **no** |",
    ]
    path = tmp_path / "r.json"
    common.write_json(path, {"results": [{"scale": "baby", "v": 1}, {"scale": "sports", "v": 2}]})
    merged = common.merge_results(path, [{"scale": "baby", "v": 3}], ("scale",))
    assert merged == [{"scale": "baby", "v": 3}, {"scale": "sports", "v": 2}]  # scale order
    assert common.merge_results(tmp_path / "none.json", [{"scale": "a"}], ("scale",)) == [
        {"scale": "a"}
    ]


def test_models_quick(tmp_path):
    """``benchmarks/models.py --quick``: all six models train, evaluate and report positive
    times (in a subprocess, which runs the cases in one child process)."""
    out = tmp_path / "models.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "models.py"), "--quick", "--out", str(out)],
        cwd=REPO, env=CHECKOUT_ENV, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "s/epoch extrapolated from 2 steps" in proc.stdout
    payload = json.loads(out.read_text())
    _check_common_payload(payload, "models")
    models = load_benchmark("models")
    assert [e["model"] for e in payload["results"]] == list(models.MODELS)
    assert payload["results"][0]["peak_extra_bytes"] > 0
    for e in payload["results"]:
        assert e["scale"] == "quick" and e["timed_batches"] == payload["batches"]
        assert e["median_step_s"] > 0 and e["eval_s"] > 0 and e["on_epoch_start_s"] >= 0
        assert e["epoch_s"] == pytest.approx(
            e["median_step_s"] * e["batches_per_epoch"] + e["on_epoch_start_s"]
        )
        assert e["epoch_s_method"] == f"extrapolated from {payload['batches']} steps"
        # --quick runs all models in one process, where a later model may reuse freed memory
        assert e["peak_extra_bytes"] >= 0 and e["peak_reset"] is True
        assert e["batch_size"] == (1024 if e["model"] == "micro" else 2048)
    assert payload["memory_target"]["met"] is None  # Clothing was not run
    with pytest.raises(ValueError, match="--models must name some of"):
        models.main(["--models", "mf,bpr"])
    with pytest.raises(ValueError, match="--batches must be >= 1"):
        models.main(["--batches", "0"])


def test_models_quick_full_epoch(tmp_path):
    """``--full-epoch`` times one real epoch instead of extrapolating from the steps."""
    out = tmp_path / "models.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "models.py"), "--quick", "--full-epoch",
         "--models", "mf,sea-a", "--out", str(out)],
        cwd=REPO, env=CHECKOUT_ENV, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "s/epoch timed over one full epoch" in proc.stdout
    payload = json.loads(out.read_text())
    assert payload["epoch_s_method"] == "one full epoch, timed"
    assert [e["model"] for e in payload["results"]] == ["mf", "sea-a"]
    for e in payload["results"]:
        assert e["epoch_s_method"] == "one full epoch, timed" and e["epoch_s"] > 0
