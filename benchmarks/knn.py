"""kNN item graphs: blockwise ``pyg_multirec.nn`` vs the dense N x N way of the MICRO code.

Two workloads, each done two ways, on the 4,096-d image features of a synthetic data set of
the size of Amazon Baby / Sports / Clothing (``SyntheticMultiModal``, 4,096-d image and 384-d
text features; only the image ones are used), with k = 10:

* ``build``: the normalised kNN graph of the raw features (MICRO eq. 1-3).
  ``ours`` = :func:`pyg_multirec.nn.knn_item_graph` (top-k taken 1,024 rows at a time);
  ``dense`` = the LATTICE/MICRO code path: the full N x N cosine similarity matrix,
  ``torch.topk``, ``scatter`` of the kept values into an N x N zero matrix, and
  :math:`D^{-1/2} S D^{-1/2}` computed densely.
* ``step``: one training step of learned structure (MICRO eq. 4-6): transform the features
  (``Linear(4096, 64)``), build the learned kNN graph with gradient through its kept edge
  weights, mix it with the initial graph (:math:`\\lambda = 0.7`), propagate a 64-d item
  embedding over it once (MICRO's one item-graph layer), take the sum of the output and
  back-propagate into the transform and the embedding.
  ``ours`` = :class:`pyg_multirec.nn.KNNStructureLayer` followed by
  ``LightGCNConv(normalize=False)``; ``dense`` = the same on dense N x N matrices, with the
  initial graph held as a dense matrix as the MICRO code does. The initial graph is a
  constant of training: both methods take the one ``build-ours`` computed (saved to a file)
  instead of repeating the N x N x 4,096 product, ``ours`` as the layer's cached buffers,
  ``dense`` expanded into an N x N matrix. Loading it (and creating the parameters) is part
  of the memory measurement, as it is part of what a training process holds.

The dense normalisation multiplies by the degree vectors with broadcasting; the LATTICE/MICRO
code multiplies by ``torch.diagflat`` matrices with two dense ``mm`` (:math:`O(N^3)`), which
would be far slower still, so the dense reference here is the charitable version.

Memory: every case runs in a fresh subprocess (``--case ... --json-stdout``) which imports
what it needs and loads the features, then measures the peak extra memory of the case over
that baseline: on CPU the peak resident set size (``VmHWM``, reset after loading) minus the
resident size at that point -- RSS is the honest measure for torch on CPU, whose large blocks
go straight to and from the system and are invisible to :mod:`tracemalloc`; on CUDA
``torch.cuda.max_memory_allocated`` minus the allocation at that point. A dense case whose
expected need (``DENSE_MATRICES_NEEDED`` N x N matrices) exceeds the free memory is skipped.
Cases run one after the other (never two dense ones at once); ``--quick`` runs all four in
one process to save start-up time, so only its first case's memory is exact.

Times: a step is the median of ``--repeats`` steps after ``--warmup`` untimed ones; a build
(dominated by the N x N x 4,096 product, 100 s at Clothing size on two cores) the median of
``--build-repeats`` builds after ``--warmup`` untimed builds of the first ``WARMUP_ROWS``
items. Ours and dense run in separate processes, one after the other, so on a shared machine
their ratio is only as good as the load was steady; the CPU time of the process (all
threads, :func:`time.process_time`) is recorded too, as it depends less on other load.

Targets, at Clothing size: peak extra memory of ``ours`` at most 5% of ``dense``, and time of
``ours`` at most that of ``dense``.

Usage::

    python benchmarks/knn.py --scales baby,sports,clothing
    python benchmarks/knn.py --scales clothing --repeats 2 --merge  # add to the JSON
    python benchmarks/knn.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _common import (
    EMBEDDING_DIM,
    IMAGE_DIM,
    MIB,
    QUICK_REPEATS,
    TEXT_DIM,
    PeakMemory,
    Scale,
    add_common_arguments,
    available_memory_bytes,
    default_out_path,
    markdown_table,
    median,
    merge_results,
    parse_and_set_up,
    parse_scales,
    payload_header,
    scale_dict,
    time_call,
    write_json,
)
from torch import Tensor

SCRIPT = "knn"
DEFAULT_K = 10
DEFAULT_KNN_REPEATS = 3
DEFAULT_BUILD_REPEATS = 1
FLOAT32_BYTES = 4
# N x N float32 matrices a dense case needs at its peak (measured at Baby size: 3.5 for a
# build, 7.3 for a step), rounded up; a dense case is skipped when they do not fit.
DENSE_MATRICES_NEEDED = {"build": 4, "step": 8}
SKIP_LAMBDA = 0.7  # weight of the initial graph (MICRO paper; pyg_multirec default)
WARMUP_ROWS = 2048  # items in the warm-up call of a build
TARGET_SCALE = "clothing"
MEMORY_RATIO_TARGET = 0.05  # ours / dense peak extra memory <= this
TIME_RATIO_TARGET = 1.0  # ours / dense time <= this
# ours and dense must agree on these summaries (float32 sums over N x k terms). The loss
# (sum of the output, positive and negative terms) is recorded but not compared: it cancels
# to a small number, so float32 near-ties in the top-k that the blockwise and the dense
# product break differently move it by more than this relative tolerance.
AGREEMENT_RTOL = 1e-3
AGREEMENT_KEYS = (
    "nnz", "weight_sum", "output_norm", "transform_grad_norm", "embedding_grad_norm",
)
WORKLOADS = ("build", "step")
METHODS = ("ours", "dense")
CASES = tuple(f"{workload}-{method}" for workload in WORKLOADS for method in METHODS)


# ----------------------------------------------------------------------------------------
# the dense reference (LATTICE / MICRO code path)
def dense_cosine_similarity(x: Tensor) -> Tensor:
    """The full N x N cosine similarity matrix (LATTICE ``build_sim``)."""
    x_unit = x / x.norm(dim=-1, keepdim=True)
    return x_unit @ x_unit.t()


def dense_knn(similarity: Tensor, k: int) -> Tensor:
    """Keeps the top-k entries of every row in an N x N zero matrix (LATTICE
    ``build_knn_neighbourhood``), negative ones set to zero (MICRO eq. 2 text, the
    ``pyg_multirec`` default)."""
    values, index = torch.topk(similarity, k, dim=-1)
    return torch.zeros_like(similarity).scatter_(-1, index, values.clamp_min(0.0))


def dense_normalize(adj: Tensor) -> Tensor:
    """:math:`D^{-1/2} A D^{-1/2}` on the dense matrix (LATTICE
    ``compute_normalized_laplacian``, with broadcasting instead of ``diagflat`` products)."""
    deg_inv_sqrt = adj.sum(dim=-1).pow(-0.5)
    deg_inv_sqrt = torch.where(torch.isinf(deg_inv_sqrt), 0.0, deg_inv_sqrt)
    return deg_inv_sqrt[:, None] * adj * deg_inv_sqrt[None, :]


def dense_knn_graph(x: Tensor, k: int) -> Tensor:
    """MICRO eq. 1-3 the dense way."""
    return dense_normalize(dense_knn(dense_cosine_similarity(x), k))


# ----------------------------------------------------------------------------------------
# one case, in its own process
def _summary_of_dense(adj: Tensor) -> dict[str, float]:
    return {"nnz": int((adj != 0).sum()), "weight_sum": float(adj.sum())}


def _summary_of_edges(edge_weight: Tensor) -> dict[str, float]:
    return {"nnz": int((edge_weight != 0).sum()), "weight_sum": float(edge_weight.sum())}


def _initial_transform(in_channels: int, seed: int) -> tuple[Tensor, Tensor]:
    """Weights of the ``Linear(in_channels, 64)`` transform, the same in both methods."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(EMBEDDING_DIM, in_channels, generator=gen) / math.sqrt(in_channels)
    bias = torch.randn(EMBEDDING_DIM, generator=gen) / math.sqrt(in_channels)
    return weight, bias


def _item_embedding(num_items: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed + 1)
    return torch.randn(num_items, EMBEDDING_DIM, generator=gen)


def _build_case(
    method: str, x: Tensor, k: int, graph_file: Path
) -> tuple[Callable[[], dict[str, float]], Callable[[], None], Callable[[], None]]:
    """``(run, warm_up, finish)`` of a build: ``run()`` returns a summary of the graph,
    ``finish()`` saves ``ours``' graph (edges) to ``graph_file`` for the step cases."""
    held: dict[str, Any] = {}
    if method == "ours":
        from pyg_multirec.nn import knn_item_graph  # imported before the measurement

        def build(features: Tensor) -> dict[str, float]:
            held["graph"] = knn_item_graph(features, k)
            return _summary_of_edges(held["graph"][1])

        def finish() -> None:
            torch.save(tuple(t.cpu() for t in held.pop("graph")), graph_file)
    else:

        def build(features: Tensor) -> dict[str, float]:
            return _summary_of_dense(dense_knn_graph(features, k))

        def finish() -> None:
            pass

    warm_rows = min(x.size(0), WARMUP_ROWS)
    return (lambda: build(x)), (lambda: build(x[:warm_rows])), finish


def _step_case(
    method: str, x: Tensor, k: int, seed: int, graph_file: Path
) -> tuple[Callable[[], dict[str, float]], Callable[[], None]]:
    """``(step, setup)`` of a training step; ``setup()`` loads the initial graph built by
    ``build-ours`` (the dense method holds it as a dense matrix, as the MICRO code does)."""
    device = x.device
    num_items = x.size(0)
    weight, bias = _initial_transform(x.size(1), seed)
    item_emb = _item_embedding(num_items, seed).to(device).requires_grad_()
    if method == "ours":
        from pyg_multirec.nn import KNNStructureLayer, LightGCNConv  # imported beforehand

        layer = KNNStructureLayer(x.size(1), EMBEDDING_DIM, k=k, skip_lambda=SKIP_LAMBDA)
        with torch.no_grad():
            layer.lin.weight.copy_(weight)
            layer.lin.bias.copy_(bias)
        layer = layer.to(device)
        conv = LightGCNConv(normalize=False)
        lin = layer.lin

        def setup() -> None:
            # The layer caches its initial graph in buffers on the first call; handing it
            # the one build-ours computed saves a second N x N x 4,096 product. Checked
            # below, so that a change of the caching makes this fail instead of recompute.
            edge_index, edge_weight = torch.load(graph_file)
            layer.init_edge_index = edge_index.to(device)
            layer.init_edge_weight = edge_weight.to(device)
            layer.num_items = num_items
            if layer.initial_graph(x)[0] is not layer.init_edge_index:
                raise RuntimeError("KNNStructureLayer did not take the given initial graph")

        def forward() -> Tensor:
            edge_index, edge_weight = layer(x)  # eq. 1-5
            return conv(item_emb, edge_index, edge_weight)  # eq. 6, one layer

    else:
        lin = torch.nn.Linear(x.size(1), EMBEDDING_DIM).to(device)
        with torch.no_grad():
            lin.weight.copy_(weight)
            lin.bias.copy_(bias)
        state: dict[str, Tensor] = {}

        def setup() -> None:
            edge_index, edge_weight = torch.load(graph_file)
            source, target = edge_index.to(device)
            initial = torch.zeros(num_items, num_items, device=device)  # held densely
            initial[target, source] = edge_weight.to(device)
            state["initial"] = initial

        def forward() -> Tensor:
            learned = dense_knn_graph(lin(x), k)  # eq. 4, 1-3
            adj = SKIP_LAMBDA * state["initial"] + (1.0 - SKIP_LAMBDA) * learned  # eq. 5
            return adj @ item_emb  # eq. 6, one layer

    def step() -> dict[str, float]:
        lin.zero_grad(set_to_none=True)
        item_emb.grad = None
        out = forward()
        loss = out.sum()
        loss.backward()
        return {
            "loss": float(loss.detach()),
            "output_norm": float(out.detach().norm()),
            "transform_grad_norm": float(lin.weight.grad.norm()),
            "embedding_grad_norm": float(item_emb.grad.norm()),
        }

    return step, setup


def run_cases(
    cases: list[str], features: Path, graph_file: Path, device: torch.device,
    repeats: int, build_repeats: int, warmup: int, k: int, seed: int,
) -> list[dict[str, Any]]:
    """Times cases one after the other and measures the peak extra memory of each over the
    memory in use after imports and loading the features. Exact for the first case of a
    fresh process only (later ones may reuse memory and libraries the earlier ones
    loaded): the driver runs one case per process, except with ``--quick`` (all in one)."""
    if any(case.endswith("-ours") for case in cases):
        import pyg_multirec.nn  # noqa: F401  (imports are not part of the measurement)
    x = torch.load(features).to(device)
    return [
        _run_case(case, x, graph_file, device, repeats, build_repeats, warmup, k, seed)
        for case in cases
    ]


def _run_case(
    case: str, x: Tensor, graph_file: Path, device: torch.device, repeats: int,
    build_repeats: int, warmup: int, k: int, seed: int,
) -> dict[str, Any]:
    workload, method = case.split("-")
    finish: Callable[[], None] = lambda: None  # noqa: E731
    with PeakMemory(device) as memory:
        if workload == "build":
            run, warm_up, finish = _build_case(method, x, k, graph_file)
            setup_s = 0.0
            repeats = build_repeats
        else:
            run, setup = _step_case(method, x, k, seed, graph_file)
            setup_s = time_call(setup, device)
            warm_up = run
        for _ in range(warmup):
            warm_up()
        times, cpu_times, summary = [], [], {}
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            summary = run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    finish()
    return {
        "case": case,
        "num_items": x.size(0),
        "feature_dim": x.size(1),
        "k": k,
        "times_s": times,
        "median_s": median(times),
        "cpu_times_s": cpu_times,
        "median_cpu_s": median(cpu_times),
        "setup_s": setup_s,
        "peak_extra_bytes": memory.peak_extra_bytes,
        "baseline_bytes": memory.baseline_bytes,
        "peak_reset": memory.peak_was_reset,
        "summary": summary,
        "torch_num_threads": torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------------------
# the driver
def _run_child(
    cases: list[str], features: Path, graph_file: Path, args: argparse.Namespace,
    repeats: int, build_repeats: int,
) -> list[dict[str, Any]]:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--case", ",".join(cases),
        "--features", str(features), "--graph", str(graph_file), "--device", args.device,
        "--repeats", str(repeats), "--build-repeats", str(build_repeats),
        "--warmup", str(args.warmup), "--k", str(args.k), "--seed", str(args.seed),
        "--json-stdout",
    ]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {cases} failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _agree(a: dict[str, float], b: dict[str, float]) -> bool:
    return all(
        math.isclose(a[key], b[key], rel_tol=AGREEMENT_RTOL, abs_tol=AGREEMENT_RTOL)
        for key in AGREEMENT_KEYS if key in a
    )


def _dense_memory_problem(case: str, num_items: int, device: torch.device) -> str | None:
    """Why a dense case must be skipped (likely to exhaust memory), or ``None``."""
    if not case.endswith("-dense"):
        return None
    workload = case.split("-")[0]
    need = DENSE_MATRICES_NEEDED[workload] * num_items**2 * FLOAT32_BYTES
    available = available_memory_bytes(device)
    if need <= available:
        return None
    return (f"skipped: needs about {need / MIB:.0f} MiB "
            f"({DENSE_MATRICES_NEEDED[workload]} N x N float32), {available / MIB:.0f} MiB free")


def run_scale(
    scale: Scale, args: argparse.Namespace, repeats: int, build_repeats: int, workdir: Path
) -> dict[str, Any]:
    from pyg_multirec.datasets import SyntheticMultiModal

    start = time.perf_counter()
    data = SyntheticMultiModal(
        num_users=scale.num_users,
        num_items=scale.num_items,
        num_interactions=scale.num_interactions,
        modality_dims={"image": IMAGE_DIM, "text": TEXT_DIM},
        seed=args.seed,
    )[0]
    features = workdir / f"{scale.name}-image.pt"
    graph_file = workdir / f"{scale.name}-graph.pt"
    torch.save(data["item"].image_feat.contiguous(), features)
    del data
    print(f"[{scale.name}] features {scale.num_items} x {IMAGE_DIM} "
          f"({time.perf_counter() - start:.1f} s)", flush=True)

    # One fresh process per case, in the order of CASES (build-ours first: it saves the
    # initial graph the step cases use); --quick saves process starts with one for all.
    groups = [list(CASES)] if args.quick else [[case] for case in CASES]
    cases: dict[str, dict[str, Any]] = {}
    for group in groups:
        skipped = {case: _dense_memory_problem(case, scale.num_items, torch.device(args.device))
                   for case in group}
        for case, reason in skipped.items():
            if reason is not None:
                cases[case] = {"case": case, "skipped": reason}
                print(f"[{scale.name}] {case}: {reason}", flush=True)
        group = [case for case in group if skipped[case] is None]
        if not group:
            continue
        start = time.perf_counter()
        for result in _run_child(group, features, graph_file, args, repeats, build_repeats):
            cases[result["case"]] = result
            print(f"[{scale.name}] {result['case']}: {result['median_s']:.3f} s, peak extra "
                  f"{result['peak_extra_bytes'] / MIB:.0f} MiB", flush=True)
        print(f"[{scale.name}] (process of {', '.join(group)}: "
              f"{time.perf_counter() - start:.0f} s)", flush=True)

    entry: dict[str, Any] = {
        "scale": scale.name,
        **{key: value for key, value in scale_dict(scale).items() if key != "name"},
        "feature_dim": IMAGE_DIM,
        "k": args.k,
        "repeats": repeats,
        "build_repeats": build_repeats,
        "cases": cases,
    }
    for workload in WORKLOADS:
        ours, dense = cases[f"{workload}-ours"], cases[f"{workload}-dense"]
        if "skipped" in ours or "skipped" in dense:
            entry[workload] = None
            continue
        time_ratio = ours["median_s"] / dense["median_s"]
        cpu_time_ratio = ours["median_cpu_s"] / dense["median_cpu_s"]
        memory_ratio = ours["peak_extra_bytes"] / max(dense["peak_extra_bytes"], 1)
        entry[workload] = {
            "time_ratio": time_ratio,
            "cpu_time_ratio": cpu_time_ratio,
            "memory_ratio": memory_ratio,
            "meets_time_target": time_ratio <= TIME_RATIO_TARGET,
            "meets_memory_target": memory_ratio <= MEMORY_RATIO_TARGET,
            "results_agree": _agree(ours["summary"], dense["summary"]),
        }
    return entry


def table(entries: list[dict[str, Any]]) -> str:
    headers = [
        "scale", "items", "workload", "ours (s)", "dense (s)",
        f"time ratio (<= {TIME_RATIO_TARGET:g})", "CPU-time ratio", "ours peak (MiB)",
        "dense peak (MiB)", f"memory ratio (<= {MEMORY_RATIO_TARGET:g})", "agree",
    ]
    rows = []
    for e in entries:
        for workload in WORKLOADS:
            ours, dense = e["cases"][f"{workload}-ours"], e["cases"][f"{workload}-dense"]
            ratios = e[workload] or {}

            def seconds(case: dict[str, Any]) -> Any:
                return case.get("median_s", "skipped")

            def mib(case: dict[str, Any]) -> Any:
                return case["peak_extra_bytes"] / MIB if "peak_extra_bytes" in case else "-"

            rows.append([
                e["scale"], e["num_items"], workload, seconds(ours), seconds(dense),
                ratios.get("time_ratio", "-"), ratios.get("cpu_time_ratio", "-"),
                mib(ours), mib(dense),
                ratios.get("memory_ratio", "-"), ratios.get("results_agree", "-"),
            ])
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> dict[str, Any] | list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, DEFAULT_KNN_REPEATS)
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="neighbours per item")
    parser.add_argument("--case", default=None,
                        help=f"run these cases (comma-separated, of {', '.join(CASES)}) "
                             "in this process (used by the driver)")
    parser.add_argument("--build-repeats", type=int, default=DEFAULT_BUILD_REPEATS,
                        help="timed calls of each build (one costs an N x N x 4,096 product)")
    parser.add_argument("--features", type=Path, default=None,
                        help="features file of --case (a tensor saved by torch.save)")
    parser.add_argument("--graph", type=Path, default=None,
                        help="initial-graph file of --case (written by build-ours)")
    parser.add_argument("--json-stdout", action="store_true",
                        help="with --case: print the result as one JSON line on stdout")
    args, device = parse_and_set_up(parser, argv)

    if args.case is not None:
        cases = args.case.split(",")
        if not cases or any(case not in CASES for case in cases):
            raise ValueError(f"--case must list some of {CASES} (got {args.case!r})")
        if args.features is None or not args.features.is_file():
            raise FileNotFoundError(f"--case needs --features FILE (got {args.features})")
        if args.graph is None:
            raise ValueError("--case needs --graph FILE")
        results = run_cases(cases, args.features, args.graph, device, args.repeats,
                            args.build_repeats, args.warmup, args.k, args.seed)
        print(json.dumps(results) if args.json_stdout else results, flush=True)
        return results

    if args.build_repeats < 1:
        raise ValueError(f"--build-repeats must be >= 1 (got {args.build_repeats})")
    repeats = min(args.repeats, QUICK_REPEATS) if args.quick else args.repeats
    build_repeats = min(args.build_repeats, QUICK_REPEATS) if args.quick else args.build_repeats
    scales = parse_scales(args.scales, args.quick)
    out = args.out or default_out_path(SCRIPT, device, args.quick)
    payload: dict[str, Any] = {
        **payload_header(SCRIPT, device, args.quick),
        "repeats": repeats,
        "build_repeats": build_repeats,
        "warmup": args.warmup,
        "seed": args.seed,
        "k": args.k,
        "skip_lambda": SKIP_LAMBDA,
        "memory_measure": (
            "peak RSS (VmHWM, reset after loading) minus RSS at that point, fresh process "
            "per case" if device.type == "cpu"
            else "torch.cuda.max_memory_allocated minus memory_allocated, fresh process per case"
        ),
        "target_scale": TARGET_SCALE,
        "memory_ratio_target": MEMORY_RATIO_TARGET,
        "time_ratio_target": TIME_RATIO_TARGET,
        "results": [],
    }
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="knn-bench-") as tmp:
        for scale in scales:
            results.append(run_scale(scale, args, repeats, build_repeats, Path(tmp)))
            payload["results"] = merge_results(out, results, ("scale",)) if args.merge \
                else results
            target = [e for e in payload["results"] if e["scale"] == TARGET_SCALE]
            payload["targets_met_at_target_scale"] = (
                all(e[w] is not None and e[w]["meets_time_target"]
                    and e[w]["meets_memory_target"] for e in target for w in WORKLOADS)
                if target else None
            )
            write_json(out, payload)

    print()
    print(f"kNN graph (k={args.k}, {IMAGE_DIM}-d features), {device.type}, "
          f"{torch.get_num_threads()} threads; median of {repeats} steps / {build_repeats} "
          f"builds after {args.warmup} warm-up; peak extra memory per fresh process:")
    print(table(payload["results"]))
    print(f"\ntargets met at {TARGET_SCALE}: {payload['targets_met_at_target_scale']}")
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    main()
