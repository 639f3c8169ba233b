"""FAISS at large catalogues: kNN item graphs and top-K serving, against the exact way.

Two workloads (``--workload``), each at a list of sizes (``--sizes``), one size per run of
the script (``--merge`` keeps the other sizes already in ``--out``):

* ``graph``: the kNN item graph (k = 10) of ``N`` synthetic 384-d item features, built by
  :func:`pyg_multirec.nn.knn_item_graph` with ``backend="faiss"`` (HNSW, inner product on
  the L2-normalised features; edge weights are the exact cosines of the selected pairs).
  Reported: build seconds, peak memory (peak RSS over the RSS with the features loaded, and
  the whole process's peak RSS), recall@10 of the neighbour lists against the exact top-10
  of ``--sample`` random items (exact = their cosine to all ``N`` items, blockwise), and the
  time of the exact blockwise build: measured in full where ``N <= --exact-full-max``,
  otherwise extrapolated from the timed exact search of the sample queries
  (``N / sample`` x that time; the exact build is one such search per item).
* ``serve``: top-10 items for users by inner product of 64-d user and item embeddings (the
  score of ``Recommender.score``): exact full ranking (``user_emb @ item_emb.T`` in batches
  of 1,024 users, ``topk``, the way :func:`pyg_multirec.evaluation.evaluate` ranks) against a
  FAISS HNSW inner-product index over the items. Reported: index build seconds, users/s of
  both, recall of the ANN top-10 against the exact top-10. ``clothing`` = 39,387 users x
  23,033 items, all users timed; ``1m`` = 1,000,000 items, ``--serve-users`` users timed
  (users/s extrapolates to any user count: the work per user is independent of the others).

The synthetic data follows the feature model of
:class:`~pyg_multirec.datasets.SyntheticMultiModal`: a 12-d standard normal latent factor
per item mapped by a fixed random matrix to the feature width, plus Gaussian noise (sigma
0.1); embeddings for ``serve`` use a 16-d latent, and item vectors are scaled by a
log-normal factor (sigma 0.3) so that norms, as in trained models, vary. ANN recall depends
on such structure (on isotropic noise in 384 dimensions nearest neighbours hardly differ
from others); real features should be checked the same way (``--real-features FILE.npy``
runs ``graph`` on a ``[N, d]`` array, e.g. MovieLens text features).

Targets (issue 15): graph recall@10 >= 0.95; at 1M items a build whose process peak RSS
fits in 4 GB and that finishes in minutes on this 2-core CPU.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/ann.py --workload graph --sizes 100k
    OMP_NUM_THREADS=2 python benchmarks/ann.py --workload graph --sizes 1m --merge
    OMP_NUM_THREADS=2 python benchmarks/ann.py --workload serve --sizes clothing,1m
    python benchmarks/ann.py --quick
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import (  # noqa: E402
    MIB,
    TEXT_DIM,
    PeakMemory,
    add_common_arguments,
    markdown_table,
    merge_results,
    parse_and_set_up,
    payload_header,
    peak_rss_bytes,
    write_json,
)

from pyg_multirec.ann import FaissANN, build_index, search_index  # noqa: E402
from pyg_multirec.nn import knn_item_graph  # noqa: E402

SCRIPT = "ann"
K = 10
GRAPH_SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
SERVE_SIZES = {"clothing": (39_387, 23_033), "1m": (None, 1_000_000)}
QUICK_GRAPH = 3_000
QUICK_SERVE = (2_000, 3_000)
FEATURE_LATENT = 12  # SyntheticMultiModal: generic (8) + unique (4) factors
FEATURE_NOISE = 0.1
EMBEDDING_DIM = 64
EMBEDDING_LATENT = 16
NORM_SIGMA = 0.3
GENERATE_BLOCK = 65_536
EXACT_BLOCK = 8_192  # items per block of the exact sample search
DEFAULT_SAMPLE = 1_000
DEFAULT_SERVE_USERS = 20_000
DEFAULT_EXACT_FULL_MAX = 100_000
USER_BATCH = 1_024
RECALL_TARGET = 0.95
MEMORY_TARGET_BYTES = 4 * 1024**3
GB = 1e9


def low_rank(num: int, dim: int, latent: int, noise: float, seed: int) -> torch.Tensor:
    """``num`` rows of ``z @ W + noise * e`` (z, e standard normal, W fixed), in blocks."""
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(latent, dim, generator=gen) / math.sqrt(latent)
    out = torch.empty(num, dim)
    for start in range(0, num, GENERATE_BLOCK):
        stop = min(start + GENERATE_BLOCK, num)
        z = torch.randn(stop - start, latent, generator=gen)
        out[start:stop] = z @ mixing + noise * torch.randn(stop - start, dim, generator=gen)
    return out


@torch.no_grad()
def exact_topk_sample(
    queries: torch.Tensor, items: torch.Tensor, k: int, cosine: bool
) -> torch.Tensor:
    """Exact top-``k`` ids of ``queries`` among ``items`` (cosine or inner product),
    ``EXACT_BLOCK`` items at a time (memory ``O(queries x block)``)."""
    if cosine:
        queries = queries / queries.norm(dim=1, keepdim=True)
    best_val = torch.full((queries.size(0), k), -math.inf)
    best_idx = torch.zeros(queries.size(0), k, dtype=torch.long)
    for start in range(0, items.size(0), EXACT_BLOCK):
        block = items[start:start + EXACT_BLOCK]
        if cosine:
            block = block / block.norm(dim=1, keepdim=True)
        sim = queries @ block.t()
        val, idx = sim.topk(min(k, block.size(0)), dim=1)
        merged_val = torch.cat([best_val, val], 1)
        merged_idx = torch.cat([best_idx, idx + start], 1)
        best_val, pos = merged_val.topk(k, dim=1)
        best_idx = merged_idx.gather(1, pos)
    return best_idx


def recall_at_k(found: list[set[int]], expected: torch.Tensor) -> float:
    hits = sum(len(f & set(e.tolist())) for f, e in zip(found, expected))
    return hits / expected.numel()


def run_graph(name: str, x: torch.Tensor, args: argparse.Namespace) -> dict[str, Any]:
    num = x.size(0)
    config = FaissANN()
    with PeakMemory(torch.device("cpu")) as memory:
        start, cpu_start = time.perf_counter(), time.process_time()
        edge_index, edge_weight = knn_item_graph(x, K, backend=config)
        build_s = time.perf_counter() - start
        build_cpu_s = time.process_time() - cpu_start
    process_peak = peak_rss_bytes()
    gen = torch.Generator().manual_seed(args.seed)
    sample = torch.randperm(num, generator=gen)[: min(args.sample, num)]
    start = time.perf_counter()
    expected = exact_topk_sample(x[sample], x, K, cosine=True)
    exact_sample_s = time.perf_counter() - start
    # neighbours of item i = sources of the edges into i
    order = torch.argsort(edge_index[1], stable=True)
    targets, sources = edge_index[1, order], edge_index[0, order]
    bounds = torch.searchsorted(targets, torch.stack([sample, sample + 1]))
    found = [set(sources[a:b].tolist()) for a, b in bounds.t().tolist()]
    entry: dict[str, Any] = {
        "workload": "graph", "size": name, "ef_search": config.ef_search, "num_items": num,
        "dim": x.size(1), "k": K,
        "index": {k: v for k, v in vars(config).items()},
        "build_s": build_s, "build_cpu_s": build_cpu_s, "num_edges": edge_index.size(1),
        "baseline_bytes": memory.baseline_bytes, "peak_extra_bytes": memory.peak_extra_bytes,
        "process_peak_rss_bytes": process_peak, "peak_reset": memory.peak_was_reset,
        "sample": sample.numel(), "recall_at_10": recall_at_k(found, expected),
        "exact_sample_s": exact_sample_s,
    }
    if num <= args.exact_full_max:
        del edge_index, edge_weight
        start, cpu_start = time.perf_counter(), time.process_time()
        knn_item_graph(x, K)
        entry["exact_build_s"] = time.perf_counter() - start
        entry["exact_build_cpu_s"] = time.process_time() - cpu_start
        entry["exact_build_method"] = "measured"
    else:
        entry["exact_build_s"] = exact_sample_s * num / sample.numel()
        entry["exact_build_method"] = (f"extrapolated: exact search of {sample.numel()} "
                                       f"sample items x {num} / {sample.numel()}")
    entry["load_average_1m"] = os.getloadavg()[0]  # the machine is shared
    entry["meets_recall_target"] = entry["recall_at_10"] >= RECALL_TARGET
    entry["meets_memory_target"] = process_peak <= MEMORY_TARGET_BYTES
    return entry


def run_serve(name: str, num_users: int, num_items: int, timed_users: int,
              args: argparse.Namespace) -> list[dict[str, Any]]:
    """One index and one exact ranking; one entry per ``--ef-search`` value."""
    items = low_rank(num_items, EMBEDDING_DIM, EMBEDDING_LATENT, FEATURE_NOISE, args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    items *= torch.exp(NORM_SIGMA * torch.randn(num_items, 1, generator=gen))
    users = low_rank(timed_users, EMBEDDING_DIM, EMBEDDING_LATENT, FEATURE_NOISE,
                     args.seed + 2)
    config = FaissANN()
    start, cpu_start = time.perf_counter(), time.process_time()
    index = build_index(items, config)
    build_s, build_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start

    start, cpu_start = time.perf_counter(), time.process_time()
    exact = torch.empty(timed_users, K, dtype=torch.long)
    with torch.no_grad():
        for s in range(0, timed_users, USER_BATCH):
            exact[s:s + USER_BATCH] = (users[s:s + USER_BATCH] @ items.t()).topk(K).indices
    exact_s, exact_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    entries = []
    for ef_search in args.ef_search:
        search_config = FaissANN(ef_search=ef_search)
        start, cpu_start = time.perf_counter(), time.process_time()
        _, found = search_index(index, users, K, search_config)
        ann_s, ann_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
        found_sets = [set(row.tolist()) for row in found]
        entries.append({
            "workload": "serve", "size": name, "ef_search": ef_search,
            "num_users": num_users or timed_users, "timed_users": timed_users,
            "num_items": num_items, "dim": EMBEDDING_DIM, "k": K,
            "index": {k: v for k, v in vars(search_config).items()},
            "index_build_s": build_s, "index_build_cpu_s": build_cpu_s, "exact_s": exact_s,
            "ann_s": ann_s, "exact_cpu_s": exact_cpu_s, "ann_cpu_s": ann_cpu_s,
            "load_average_1m": os.getloadavg()[0],
            "exact_users_per_s": timed_users / exact_s,
            "ann_users_per_s": timed_users / ann_s,
            "speedup": exact_s / ann_s, "recall_at_10": recall_at_k(found_sets, exact),
        })
    return entries


def _table(results: list[dict[str, Any]]) -> str:
    graph = [e for e in results if e["workload"] == "graph"]
    serve = [e for e in results if e["workload"] == "serve"]
    text = []
    if graph:
        text.append(markdown_table(
            ["items", "dim", "FAISS build (s)", "FAISS build CPU (s)", "exact build (s)",
             "exact how",
             "peak extra (GB)", "process peak RSS (GB)", "recall@10", "sample",
             "recall >= 0.95", "RSS <= 4 GiB"],
            [[e["num_items"], e["dim"], e["build_s"], e.get("build_cpu_s", "-"),
              e["exact_build_s"],
              e["exact_build_method"].split(":")[0], e["peak_extra_bytes"] / GB,
              f"{e['process_peak_rss_bytes'] / GB:.3f}", f"{e['recall_at_10']:.4f}", e["sample"],
              e["meets_recall_target"], e["meets_memory_target"]] for e in graph]))
    if serve:
        text.append(markdown_table(
            ["users", "items", "efSearch", "timed users", "index build (s)", "exact users/s",
             "ANN users/s", "speed-up", "CPU-time speed-up", "recall@10 vs exact"],
            [[e["num_users"], e["num_items"], e.get("ef_search", "-"), e["timed_users"],
              e["index_build_s"],
              e["exact_users_per_s"], e["ann_users_per_s"], e["speedup"],
              e["exact_cpu_s"] / e["ann_cpu_s"], f"{e['recall_at_10']:.4f}"] for e in serve]))
    return "\n\n".join(text)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, 1, merge_unit="(workload, size) pairs")
    parser.add_argument("--workload", choices=("graph", "serve"), default="graph")
    parser.add_argument("--sizes", default=None,
                        help=f"graph: some of {list(GRAPH_SIZES)}; serve: some of "
                        f"{list(SERVE_SIZES)}")
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE,
                        help="graph: items whose exact neighbours are computed for recall")
    parser.add_argument("--serve-users", type=int, default=DEFAULT_SERVE_USERS,
                        help="serve at 1m: users timed")
    parser.add_argument("--ef-search", type=lambda t: [int(v) for v in t.split(",")],
                        default=[64], help="serve: comma-separated HNSW efSearch values, "
                        "each searched on the same index (default 64)")
    parser.add_argument("--exact-full-max", type=int, default=DEFAULT_EXACT_FULL_MAX,
                        help="graph: time the full exact build up to this many items")
    parser.add_argument("--real-features", type=Path, default=None,
                        help="graph: a [N, d] .npy array instead of synthetic features")
    args, device = parse_and_set_up(parser, argv)
    if device.type != "cpu":
        raise ValueError("benchmarks/ann.py runs on CPU (faiss-cpu)")
    for flag in ("sample", "serve_users"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1")
    out = args.out or (Path(__file__).resolve().parent / "results"
                       / f"{SCRIPT}-{args.workload}-cpu{'-quick' if args.quick else ''}.json")
    results = []
    if args.workload == "graph":
        if args.real_features is not None:
            feats = torch.from_numpy(np.load(args.real_features)).float()
            cases = [(args.real_features.stem, feats)]
        elif args.quick:
            cases = [("quick", low_rank(QUICK_GRAPH, TEXT_DIM, FEATURE_LATENT,
                                        FEATURE_NOISE, args.seed))]
        else:
            names = _names(args.sizes or "100k", GRAPH_SIZES)
            cases = [(n, None) for n in names]
        for name, feats in cases:
            if feats is None:
                feats = low_rank(GRAPH_SIZES[name], TEXT_DIM, FEATURE_LATENT, FEATURE_NOISE,
                                 args.seed)
            entry = run_graph(name, feats, args)
            del feats
            print(f"graph {name}: build {entry['build_s']:.1f} s, recall@10 "
                  f"{entry['recall_at_10']:.4f}, peak extra "
                  f"{entry['peak_extra_bytes'] / MIB:,.0f} MiB", flush=True)
            results.append(entry)
    else:
        if args.quick:
            cases = [("quick", *QUICK_SERVE, QUICK_SERVE[0])]
        else:
            cases = []
            for name in _names(args.sizes or "clothing", SERVE_SIZES):
                users, items = SERVE_SIZES[name]
                cases.append((name, users, items, users or args.serve_users))
        for name, users, items, timed in cases:
            for entry in run_serve(name, users, items, timed, args):
                print(f"serve {name} efSearch {entry['ef_search']}: ANN "
                      f"{entry['ann_users_per_s']:,.0f} users/s, exact "
                      f"{entry['exact_users_per_s']:,.0f} users/s, recall@10 "
                      f"{entry['recall_at_10']:.4f}", flush=True)
                results.append(entry)
    if args.merge and out.is_file():
        results = merge_results(out, results, ("workload", "size", "ef_search"))
    payload = {**payload_header(SCRIPT, device, args.quick), "seed": args.seed,
               "recall_target": RECALL_TARGET, "memory_target_bytes": MEMORY_TARGET_BYTES,
               "results": results}
    write_json(out, payload)
    print(_table(results))
    print(f"wrote {out}")
    return payload


def _names(text: str, known: dict[str, Any]) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"--sizes must name some of {list(known)} (got {text!r})")
    return names


if __name__ == "__main__":
    main()
