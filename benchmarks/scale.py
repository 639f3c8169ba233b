"""Catalogue size against one machine: LightGCN and SEA-d seconds per epoch and peak memory.

Sizes (``--sizes``): ``10k``, ``100k``, ``1m`` items, as many users as items, and 10
interactions per user (so interactions = 10 x items; 80 % train, the rest held out as
valid / test). Items are drawn from a Zipf-like popularity (exponent 0.8), so degrees are
skewed as in real catalogues. Item features: two modalities, ``text`` 384-d and ``image``
256-d (not the 4,096-d VGG features of the Amazon sets: at 1M items those alone would be
16 GB; see ``docs/scaling.md``), from the low-rank feature model of
:class:`~pyg_multirec.datasets.SyntheticMultiModal`.

Every (model, size) runs in a fresh subprocess that generates the data (seeded, so every
case sees the same data), then, inside one :class:`~_common.PeakMemory` block, builds the
model of the example script (``examples/lightgcn.py``, ``examples/sea.py --variant d``, the
example's default arguments), times ``model.on_epoch_start``, runs ``--warmup`` untimed and
``--batches`` timed training steps (real :class:`~pyg_multirec.sampling.BPRSampler` batch of
2,048, ``model.loss``, backward, Adam step), then ``--batches`` timed calls of the
batch-independent part alone (``model.embed()`` forward and backward: the full-graph
propagation that every step, and every data-parallel rank, repeats).
**Seconds per epoch are extrapolated** from the timed steps: median step x batches per epoch
+ ``on_epoch_start``; full epochs at 1M items take hours on this CPU. Peak memory: peak RSS
over the RSS with the data generated (CPU), or ``torch.cuda.max_memory_allocated`` over the
allocation at that moment (CUDA); the process's whole peak RSS is recorded too.

SEA's frozen kNN item graphs (``--item-graph``): ``exact`` (the example's blockwise
:func:`~pyg_multirec.nn.knn_item_graph`, :math:`O(N^2 d)`), ``faiss`` (the same function with
``backend="faiss"``, HNSW), or ``random`` (k random neighbours per item with the same edge
count: the per-step cost does not depend on which neighbours, and it skips a build that at
1M items takes minutes per modality, measured separately by ``benchmarks/ann.py``).
``auto`` (the default): exact up to 25k items, faiss up to 200k, random beyond. The build
time is reported in the ``build_s`` column either way.

Usage (CPU; on a GPU add ``--device cuda``)::

    OMP_NUM_THREADS=2 python benchmarks/scale.py --sizes 10k,100k,1m --threads 2
    python benchmarks/scale.py --device cuda --sizes 10k,100k,1m --batches 20
    python benchmarks/scale.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch  # noqa: E402
from _common import (  # noqa: E402
    TEXT_DIM,
    PeakMemory,
    add_common_arguments,
    load_benchmark,
    markdown_table,
    median,
    merge_results,
    parse_and_set_up,
    payload_header,
    peak_rss_bytes,
    time_call,
    write_json,
)
from torch_geometric.data import HeteroData  # noqa: E402

SCRIPT = "scale"
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
QUICK_SIZE = ("quick", 2_000)
MODELS = {"lightgcn": "lightgcn", "sea-d": "sea-d"}  # names in benchmarks/models.py
INTERACTIONS_PER_USER = 10
POPULARITY_EXPONENT = 0.8
SPLIT_FRACTIONS = (0.8, 0.1)  # train, valid; the rest is test
IMAGE_DIM = 256
FEATURE_LATENT = 12
FEATURE_NOISE = 0.1
GENERATE_BLOCK = 65_536
EXACT_GRAPH_MAX = 25_000
FAISS_GRAPH_MAX = 200_000
DEFAULT_BATCHES = 3
DEFAULT_WARMUP = 1
CHILD_TIMEOUT_S = 3600
GB = 1e9


# ----------------------------------------------------------------------------------------
# data
def _features(num: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    mixing = torch.randn(FEATURE_LATENT, dim, generator=gen) / math.sqrt(FEATURE_LATENT)
    out = torch.empty(num, dim)
    for start in range(0, num, GENERATE_BLOCK):
        stop = min(start + GENERATE_BLOCK, num)
        z = torch.randn(stop - start, FEATURE_LATENT, generator=gen)
        out[start:stop] = z @ mixing + FEATURE_NOISE * torch.randn(stop - start, dim,
                                                                   generator=gen)
    return out


def make_data(num_items: int, seed: int) -> HeteroData:
    """``num_items`` users and items, 10 interactions per user (duplicates dropped), items
    drawn from a Zipf-like popularity; two feature modalities."""
    gen = torch.Generator().manual_seed(seed)
    num_users = num_items
    rank = torch.randperm(num_items, generator=gen).double() + 1
    popularity = rank.pow(-POPULARITY_EXPONENT)
    users = torch.arange(num_users).repeat_interleave(INTERACTIONS_PER_USER)
    items = torch.multinomial(popularity, users.numel(), replacement=True, generator=gen)
    pairs = torch.unique(users * num_items + items)
    users, items = pairs // num_items, pairs % num_items
    draw = torch.rand(users.numel(), generator=gen)
    data = HeteroData()
    data["user"].num_nodes = num_users
    data["item"].num_nodes = num_items
    data.modalities = ["image", "text"]
    data["item"].image_feat = _features(num_items, IMAGE_DIM, gen)
    data["item"].text_feat = _features(num_items, TEXT_DIM, gen)
    bounds = (SPLIT_FRACTIONS[0], SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1])
    masks = {"train": draw < bounds[0], "valid": (draw >= bounds[0]) & (draw < bounds[1]),
             "test": draw >= bounds[1]}
    for split, mask in masks.items():
        data["user", split, "item"].edge_index = torch.stack([users[mask], items[mask]])
    return data


def random_item_graph(x: torch.Tensor, k: int, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` random neighbours per item with weight ``1 / k`` (edge count and layout of a
    kNN graph; a stand-in for timing only)."""
    num = x.size(0)
    gen = torch.Generator().manual_seed(num)
    source = torch.randint(0, num, (num * k,), generator=gen)
    target = torch.arange(num).repeat_interleave(k)
    return torch.stack([source, target]), torch.full((num * k,), 1.0 / k)


def item_graph_mode(requested: str, num_items: int) -> str:
    if requested != "auto":
        return requested
    if num_items <= EXACT_GRAPH_MAX:
        return "exact"
    return "faiss" if num_items <= FAISS_GRAPH_MAX else "random"


# ----------------------------------------------------------------------------------------
# one (model, size) case, in a fresh process
def run_case(model_name: str, size: str, num_items: int, device: torch.device,
             args: argparse.Namespace) -> dict[str, Any]:
    models = load_benchmark("models")
    _cycle, example_args = models._cycle, models.example_args

    from pyg_multirec.losses import value_checks
    from pyg_multirec.nn import knn_item_graph
    from pyg_multirec.sampling import BPRSampler
    from pyg_multirec.train import seed_everything

    start = time.perf_counter()
    data = make_data(num_items, args.seed).to(device)
    data_s = time.perf_counter() - start
    module, ex_args = example_args(MODELS[model_name], device, args.seed)
    graph_mode = None
    if model_name == "sea-d":
        graph_mode = item_graph_mode(args.item_graph, num_items)
        if graph_mode == "faiss":
            module.knn_item_graph = partial(knn_item_graph, backend="faiss")
        elif graph_mode == "random":
            module.knn_item_graph = random_item_graph
    seed_everything(args.seed)
    num_users = data["user"].num_nodes
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        model = module.build(data, ex_args).to(device)
        build_s = time.perf_counter() - start
        optimizer = torch.optim.Adam(model.main_parameters(), lr=ex_args.lr,
                                     weight_decay=ex_args.weight_decay)
        sampler = BPRSampler(data["user", "train", "item"].edge_index.cpu(), num_users,
                             num_items, ex_args.batch_size, seed=args.seed)
        model.train()
        epoch_start_s = time_call(lambda: model.on_epoch_start(1), device)
        batches = _cycle(sampler)
        scans = device.type == "cpu"

        def step() -> None:
            users, pos, neg = (t.to(device) for t in next(batches))
            with value_checks(scans):
                loss = model.loss(users, pos, neg)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        times = [time_call(step, device) for _ in range(args.warmup + args.batches)]
        times = times[args.warmup:]

        def full_graph() -> None:  # the batch-independent part: embed() forward + backward
            user_emb, item_emb = model.embed()
            (user_emb.sum() + item_emb.sum()).backward()
            optimizer.zero_grad(set_to_none=True)

        embed_times = [time_call(full_graph, device) for _ in range(args.batches)]
    step_s = median(times)
    return {
        "model": model_name, "size": size, "num_items": num_items, "num_users": num_users,
        "num_train": data["user", "train", "item"].edge_index.size(1),
        "feature_dims": {"image": IMAGE_DIM, "text": TEXT_DIM},
        "item_graph": graph_mode, "batch_size": ex_args.batch_size,
        "batches_per_epoch": len(sampler), "data_s": data_s, "build_s": build_s,
        "on_epoch_start_s": epoch_start_s, "step_times_s": times, "median_step_s": step_s,
        "embed_times_s": embed_times, "median_embed_s": median(embed_times),
        "epoch_s": step_s * len(sampler) + epoch_start_s,
        "epoch_s_method": f"extrapolated from {len(times)} steps",
        "peak_extra_bytes": memory.peak_extra_bytes, "baseline_bytes": memory.baseline_bytes,
        "process_peak_rss_bytes": peak_rss_bytes(), "peak_reset": memory.peak_was_reset,
        "device": device.type, "load_average_1m": os.getloadavg()[0],
    }


# ----------------------------------------------------------------------------------------
# the parent
def _spawn(model: str, size: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    result = workdir / f"{model}-{size}.json"
    command = [sys.executable, __file__, "--case", model, "--sizes", size,
               "--device", args.device, "--batches", str(args.batches),
               "--warmup", str(args.warmup), "--seed", str(args.seed),
               "--item-graph", args.item_graph, "--result", str(result)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    if args.quick:
        command.append("--quick")
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if proc.returncode != 0:
        print(proc.stdout[-2000:] + proc.stderr[-4000:], file=sys.stderr)
        return {"model": model, "size": size, "error": (proc.stderr or proc.stdout)[-500:]}
    entry = json.loads(result.read_text())
    print(f"[{size}] {model}: {entry['median_step_s']:.3f} s/step, "
          f"{entry['epoch_s']:,.0f} s/epoch (extrapolated), peak extra "
          f"{entry['peak_extra_bytes'] / GB:.2f} GB ({time.perf_counter() - start:.0f} s)",
          flush=True)
    return entry


def table(results: list[dict[str, Any]]) -> str:
    rows = []
    for e in results:
        if "error" in e:
            rows.append([e["size"], "-", e["model"], "failed"] + ["-"] * 7)
            continue
        rows.append([e["size"], e["num_items"], e["model"], e["item_graph"] or "-",
                     e["build_s"], e["median_step_s"], e["median_embed_s"],
                     e["batches_per_epoch"], e["epoch_s"],
                     e["peak_extra_bytes"] / GB, e["process_peak_rss_bytes"] / GB])
    return markdown_table(
        ["size", "items", "model", "item graph", "build (s)", "s/step (median)",
         "s embed() fwd+bwd", "batches/epoch", "s/epoch (extrapolated)", "peak extra (GB)",
         "process peak (GB)"],
        rows)


def _parse(text: str, known: dict[str, Any], flag: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"{flag} must name some of {list(known)} (got {text!r})")
    return names


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, 1, merge_unit="(size, model) pairs")
    parser.set_defaults(warmup=DEFAULT_WARMUP)
    parser.add_argument("--sizes", default="10k,100k,1m", help=f"some of {list(SIZES)}")
    parser.add_argument("--models", default=",".join(MODELS), help=f"some of {list(MODELS)}")
    parser.add_argument("--batches", type=int, default=DEFAULT_BATCHES,
                        help="timed training steps per case (after --warmup untimed ones)")
    parser.add_argument("--item-graph", choices=("auto", "exact", "faiss", "random"),
                        default="auto", help="how SEA-d's kNN item graphs are built")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args, device = parse_and_set_up(parser, argv)
    if args.batches < 1:
        raise ValueError(f"--batches must be >= 1 (got {args.batches})")
    sizes = [QUICK_SIZE[0]] if args.quick else _parse(args.sizes, SIZES, "--sizes")
    known = {**SIZES, QUICK_SIZE[0]: QUICK_SIZE[1]}

    if args.case is not None:  # child
        entry = run_case(args.case, sizes[0], known[sizes[0]], device, args)
        write_json(args.result, entry)
        return entry

    models = _parse(args.models, MODELS, "--models")
    out = args.out or (Path(__file__).resolve().parent / "results"
                       / f"{SCRIPT}-{device.type}{'-quick' if args.quick else ''}.json")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for model in models:
                results.append(_spawn(model, size, args, Path(tmp)))
                merged = merge_results(out, results, ("size", "model")) if args.merge \
                    else results
                payload = {
                    **payload_header(SCRIPT, device, args.quick), "seed": args.seed,
                    "batches": args.batches, "warmup": args.warmup,
                    "epoch_s_method": "extrapolated: median step x batches per epoch + "
                                      "on_epoch_start",
                    "memory_measure": "peak RSS over the RSS after data generation (CPU) / "
                                      "max_memory_allocated over the baseline (CUDA)",
                    "results": merged,
                }
                write_json(out, payload)
    print(table(payload["results"]))
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    main()
