"""LightGCN propagation: ``pyg_multirec.nn.LightGCNConv`` vs PyG's ``LGConv`` vs raw spmm.

One *step* is the forward and backward pass of ``L`` stacked LightGCN propagation layers on the
symmetric-normalised user-item graph (users and items as one homogeneous graph of
``U + I`` nodes, every training interaction as two directed edges), starting from a
``(U + I, 64)`` embedding table that requires grad; the loss is the sum of the output.
Three implementations of the same step are timed round-robin in one process:

* ``LightGCNConv``: ``pyg_multirec.nn.LightGCNConv(cached=True)``, one instance shared by the
  layers, called with ``edge_index`` (the first, untimed call builds its cache);
* ``LGConv``: ``torch_geometric.nn.LGConv()`` called with ``edge_index`` as users call it
  (it normalises the graph and gathers/scatters messages on every call);
* ``spmm``: ``torch.sparse.mm`` with a CSR matrix normalised once beforehand, autograd
  through ``torch.sparse.mm``: the plain-torch way to propagate over a cached sparse graph.
  (Its backward transposes the CSR matrix, a sort of all edges, on every call.)
* ``csr_floor`` (for information, no target): CSR products only, forward with the cached
  matrix and backward with a cached CSR copy of its transpose, through a minimal
  :class:`torch.autograd.Function`: the floor for any CSR-based propagation.

Targets: ``LightGCNConv`` at least 3x faster than ``LGConv`` and at most 1.2x the time of the
raw spmm, at every scale. Only the interaction graph is needed: it comes from
:class:`~pyg_multirec.datasets.SyntheticMultiModal` at the exact sizes of the data sets but
with 1-dimensional modality features, which keeps generation fast and does not change the
graph's statistics (only the random stream, hence the exact edges).

Usage::

    python benchmarks/conv.py --scales baby,sports,clothing --repeats 10
    python benchmarks/conv.py --quick
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from _common import (
    EMBEDDING_DIM,
    QUICK_REPEATS,
    Scale,
    add_common_arguments,
    default_out_path,
    interleaved_timings,
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
from torch_geometric.nn import LGConv

from pyg_multirec.datasets import SyntheticMultiModal
from pyg_multirec.nn import LightGCNConv, bipartite_to_homogeneous

SCRIPT = "conv"
NUM_LAYERS = (2, 3)
GRAPH_ONLY_MODALITY_DIMS = {"image": 1, "text": 1}  # features are not used here
DEFAULT_CONV_REPEATS = 10
SPEEDUP_VS_LGCONV_TARGET = 3.0  # LGConv time / LightGCNConv time >= this
RATIO_VS_SPMM_TARGET = 1.2  # LightGCNConv time / spmm time <= this
# Outputs of the three implementations must agree to this (float32, sums of <= deg terms).
AGREEMENT_ATOL = 1e-4
METHODS = ("LightGCNConv", "LGConv", "spmm", "csr_floor")
_CSR_BETA_WARNING = ".*Sparse CSR tensor support is in beta.*"


def interaction_graph(scale: Scale, seed: int) -> tuple[Tensor, int, int]:
    """Training interactions of a synthetic data set of this size, as a homogeneous
    undirected ``edge_index`` over ``U + I`` nodes; returns it, the node and the
    interaction count."""
    data = SyntheticMultiModal(
        num_users=scale.num_users,
        num_items=scale.num_items,
        num_interactions=scale.num_interactions,
        modality_dims=GRAPH_ONLY_MODALITY_DIMS,
        seed=seed,
    )[0]
    train = data["user", "train", "item"].edge_index
    edge_index = bipartite_to_homogeneous(train, scale.num_users, scale.num_items)
    return edge_index, scale.num_users + scale.num_items, train.size(1)


def normalized_csr(edge_index: Tensor, num_nodes: int) -> Tensor:
    r"""The CSR matrix :math:`\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}` with
    :math:`A_{ij} = 1` for every edge ``j -> i`` (row = target), written directly from the
    formula as an independent reference."""
    src, dst = edge_index
    degree = torch.bincount(dst, minlength=num_nodes).to(torch.float32)
    inv_sqrt = degree.pow(-0.5).masked_fill(degree == 0, 0.0)
    values = inv_sqrt[src] * inv_sqrt[dst]
    coo = torch.sparse_coo_tensor(
        torch.stack([dst, src]), values, (num_nodes, num_nodes), check_invariants=False
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CSR_BETA_WARNING)
        return coo.coalesce().to_sparse_csr()


def csr_transpose(adj: Tensor) -> Tensor:
    """A CSR copy of the transpose of the CSR matrix ``adj``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CSR_BETA_WARNING)
        return adj.to_sparse_coo().t().coalesce().to_sparse_csr()


class _FloorSpMM(torch.autograd.Function):
    """``A @ x`` with a precomputed CSR transpose for the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, adj: Tensor, adj_t: Tensor) -> Tensor:
        ctx.adj_t = adj_t
        return adj @ x

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None]:
        return ctx.adj_t @ grad_out, None, None


def make_steps(
    edge_index: Tensor, num_nodes: int, x: Tensor, num_layers: int
) -> tuple[dict[str, Callable[[], Tensor]], dict[str, float]]:
    """One forward+backward step per implementation (returning the output), and the
    seconds each one's preparation took (building the normalised CSR for ``spmm``; the
    first, cache-building call for ``LightGCNConv``; ``LGConv`` prepares nothing)."""
    ours = LightGCNConv(cached=True)
    pyg = LGConv()
    device = x.device
    setup: dict[str, float] = {"LGConv": 0.0}
    holder: dict[str, Tensor] = {}

    def build_csr() -> None:
        holder["adj"] = normalized_csr(edge_index, num_nodes)

    setup["spmm"] = time_call(build_csr, device)
    adj = holder["adj"]
    setup["csr_floor"] = setup["spmm"] + time_call(
        lambda: holder.update(adj_t=csr_transpose(adj)), device
    )
    adj_t = holder["adj_t"]

    def stack(layer: Callable[[Tensor], Tensor]) -> Callable[[], Tensor]:
        def step() -> Tensor:
            out = x
            for _ in range(num_layers):
                out = layer(out)
            out.sum().backward()
            return out

        return step

    steps = {
        "LightGCNConv": stack(lambda h: ours(h, edge_index)),
        "LGConv": stack(lambda h: pyg(h, edge_index)),
        "spmm": stack(lambda h: torch.sparse.mm(adj, h)),
        "csr_floor": stack(lambda h: _FloorSpMM.apply(h, adj, adj_t)),
    }
    setup["LightGCNConv"] = time_call(lambda: ours(x.detach(), edge_index), device)
    return steps, setup


def max_disagreement(steps: dict[str, Callable[[], Tensor]], x: Tensor) -> float:
    """Largest absolute difference of outputs and input gradients from the ``spmm`` ones."""
    outputs, grads = {}, {}
    for name, step in steps.items():
        x.grad = None
        outputs[name] = step().detach()
        grads[name] = x.grad.detach().clone()
    x.grad = None
    reference = "spmm"
    return max(
        float((outputs[name] - outputs[reference]).abs().max())
        + float((grads[name] - grads[reference]).abs().max())
        for name in steps
    )


def run_scale(
    scale: Scale, device: torch.device, repeats: int, warmup: int, seed: int
) -> list[dict[str, Any]]:
    start = time.perf_counter()
    edge_index, num_nodes, num_train = interaction_graph(scale, seed)
    edge_index = edge_index.to(device)
    print(f"[{scale.name}] graph: {num_nodes} nodes, {edge_index.size(1)} directed edges "
          f"({time.perf_counter() - start:.1f} s)", flush=True)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, EMBEDDING_DIM, generator=gen).to(device).requires_grad_()

    entries = []
    for num_layers in NUM_LAYERS:
        steps, setup = make_steps(edge_index, num_nodes, x, num_layers)
        disagreement = max_disagreement(steps, x)
        if disagreement > AGREEMENT_ATOL:
            raise RuntimeError(f"implementations disagree by {disagreement:.3g}")

        def clear_grad() -> None:
            x.grad = None

        times = interleaved_timings(steps, device, repeats, warmup, before_each=clear_grad)
        medians = {name: median(values) for name, values in times.items()}
        speedup = medians["LGConv"] / medians["LightGCNConv"]
        ratio = medians["LightGCNConv"] / medians["spmm"]
        ratio_floor = medians["LightGCNConv"] / medians["csr_floor"]
        entry = {
            "scale": scale.name,
            **{k: v for k, v in scale_dict(scale).items() if k != "name"},
            "num_train_interactions": num_train,
            "num_nodes": num_nodes,
            "num_directed_edges": int(edge_index.size(1)),
            "num_layers": num_layers,
            "embedding_dim": EMBEDDING_DIM,
            "repeats": repeats,
            "torch_num_threads": torch.get_num_threads(),
            "median_s": medians,
            "times_s": times,
            "setup_s": setup,
            "max_abs_disagreement": disagreement,
            "speedup_vs_LGConv": speedup,
            "ratio_vs_spmm": ratio,
            "ratio_vs_csr_floor": ratio_floor,
            "target_speedup_vs_LGConv": SPEEDUP_VS_LGCONV_TARGET,
            "target_ratio_vs_spmm": RATIO_VS_SPMM_TARGET,
            "meets_speedup_target": speedup >= SPEEDUP_VS_LGCONV_TARGET,
            "meets_spmm_target": ratio <= RATIO_VS_SPMM_TARGET,
        }
        entries.append(entry)
        report = ", ".join(f"{name} {1e3 * value:.1f} ms" for name, value in medians.items())
        print(f"[{scale.name}] L={num_layers}: {report}; x{speedup:.2f} vs LGConv, "
              f"{ratio:.2f} of spmm, {ratio_floor:.2f} of csr_floor", flush=True)
    return entries


def table(entries: list[dict[str, Any]]) -> str:
    headers = [
        "scale", "layers", *(f"{name} (ms)" for name in METHODS),
        f"LGConv / ours (>= {SPEEDUP_VS_LGCONV_TARGET:g})", "met",
        f"ours / spmm (<= {RATIO_VS_SPMM_TARGET:g})", "met", "ours / csr_floor",
    ]
    rows = [
        [
            e["scale"], e["num_layers"],
            *(1e3 * e["median_s"][name] for name in METHODS),
            e["speedup_vs_LGConv"], e["meets_speedup_target"],
            e["ratio_vs_spmm"], e["meets_spmm_target"], e["ratio_vs_csr_floor"],
        ]
        for e in entries
    ]
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, DEFAULT_CONV_REPEATS)
    args, device = parse_and_set_up(parser, argv)
    repeats = min(args.repeats, QUICK_REPEATS) if args.quick else args.repeats
    scales = parse_scales(args.scales, args.quick)
    out = args.out or default_out_path(SCRIPT, device, args.quick)

    payload: dict[str, Any] = {
        **payload_header(SCRIPT, device, args.quick),
        "repeats": repeats,
        "warmup": args.warmup,
        "seed": args.seed,
        "loss": "sum of the last layer's output",
        "methods": list(METHODS),
        "results": [],
    }
    results: list[dict[str, Any]] = []
    for scale in scales:
        results += run_scale(scale, device, repeats, args.warmup, args.seed)
        payload["results"] = (
            merge_results(out, results, ("scale", "num_layers")) if args.merge else results
        )
        payload["all_targets_met"] = all(
            e["meets_speedup_target"] and e["meets_spmm_target"] for e in payload["results"]
        )
        write_json(out, payload)  # after every scale, so that a long run leaves partial output

    print()
    print(f"Forward+backward of a LightGCN stack, {device.type}, "
          f"{torch.get_num_threads()} threads, median of {repeats} after {args.warmup} warm-up:")
    print(table(payload["results"]))
    print(f"\nall targets met: {payload['all_targets_met']}")
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    main()
