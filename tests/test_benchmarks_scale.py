"""``benchmarks/ann.py`` and ``benchmarks/scale.py``: quick runs and their helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import load_benchmark

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
QUICK_TIMEOUT_S = 600


def _import(name: str):
    return load_benchmark(name)


def _run(script: str, *flags: str, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), "--quick", *flags, "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


def test_ann_quick_graph_and_serve(tmp_path):
    pytest.importorskip("faiss")
    graph = _run("ann", "--workload", "graph", out=tmp_path / "g.json")
    (entry,) = graph["results"]
    assert entry["workload"] == "graph" and entry["num_items"] == 3000 and entry["k"] == 10
    assert 0.95 <= entry["recall_at_10"] <= 1.0 and entry["meets_recall_target"]
    assert entry["build_s"] > 0 and entry["exact_build_method"] == "measured"
    assert 0 < entry["num_edges"] <= 3000 * 10
    serve = _run("ann", "--workload", "serve", out=tmp_path / "s.json")
    (entry,) = serve["results"]
    assert entry["exact_users_per_s"] > 0 and entry["ann_users_per_s"] > 0
    assert entry["speedup"] == pytest.approx(entry["exact_s"] / entry["ann_s"])
    assert 0.9 <= entry["recall_at_10"] <= 1.0


def test_ann_exact_sample_search_matches_a_direct_top_k():
    ann = _import("ann")
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    queries = x[:7]
    unit = x / x.norm(dim=1, keepdim=True)
    old_block = ann.EXACT_BLOCK
    ann.EXACT_BLOCK = 9  # several blocks, the last one short
    try:
        got = ann.exact_topk_sample(queries, x, 5, cosine=True)
        got_ip = ann.exact_topk_sample(queries, x, 5, cosine=False)
    finally:
        ann.EXACT_BLOCK = old_block
    assert torch.equal(got, (unit[:7] @ unit.t()).topk(5).indices)
    assert torch.equal(got_ip, (queries @ x.t()).topk(5).indices)
    assert ann.recall_at_k([set(r.tolist()) for r in got], got) == 1.0
    assert ann.recall_at_k([set(r[:4].tolist()) for r in got], got) == pytest.approx(0.8)


def test_scale_quick_lightgcn(tmp_path):
    payload = _run("scale", "--models", "lightgcn", out=tmp_path / "scale.json")
    (entry,) = payload["results"]
    assert entry["model"] == "lightgcn" and entry["num_items"] == 2000
    assert entry["epoch_s"] == pytest.approx(
        entry["median_step_s"] * entry["batches_per_epoch"] + entry["on_epoch_start_s"]
    )
    assert entry["peak_extra_bytes"] > 0 and entry["peak_reset"] is True


def test_scale_data_and_random_graph():
    scale = _import("scale")
    data = scale.make_data(500, seed=0)
    total = sum(data["user", s, "item"].edge_index.size(1) for s in ("train", "valid", "test"))
    assert 0.9 * 5000 <= total <= 5000  # 10 per user, a few duplicates dropped
    pairs = torch.cat([data["user", s, "item"].edge_index for s in ("train", "valid", "test")], 1)
    assert pairs.unique(dim=1).size(1) == total  # splits are disjoint, no duplicates
    assert data["item"].image_feat.shape == (500, scale.IMAGE_DIM)
    edge_index, edge_weight = scale.random_item_graph(data["item"].text_feat, 10)
    assert edge_index.shape == (2, 5000) and torch.all(edge_weight == 0.1)
    assert torch.equal(torch.bincount(edge_index[1]), torch.full((500,), 10))
    assert scale.item_graph_mode("auto", 10_000) == "exact"
    assert scale.item_graph_mode("auto", 100_000) == "faiss"
    assert scale.item_graph_mode("auto", 1_000_000) == "random"
    with pytest.raises(ValueError, match="--sizes must name some of"):
        scale.main(["--sizes", "10m"])
