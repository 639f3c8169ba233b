"""MICRO's all-item contrastive loss: the backward pass with and without the forward's cache.

:class:`~pyg_multirec.losses.MultiModalInfoNCE` forms its :math:`2M + 1` similarity matrices
one row block of :math:`\\exp` at a time. The backward pass needs each block again: it takes
the blocks the forward kept (while they fit ``cache_bytes``) and recomputes the others (a
product and an exponential each). This script times one forward + backward on random unit
rows (:math:`M` modalities and the fused view, ``(N, 64)``) for three settings of
``cache_bytes``: ``0`` (recompute every block), the default (64 MiB) and ``all`` (exactly
the size of all blocks), interleaved in one process. It prints the median seconds, the bytes
kept, the speed-up over recomputing, whether loss and gradients are bitwise those of the
recomputing run, and on CUDA the peak extra memory.

Usage::

    python benchmarks/infonce.py                        # 1,349 (ml100k) and 7,050 (Baby) items
    python benchmarks/infonce.py --items 23033 --device cuda
    python benchmarks/infonce.py --quick                # seconds-long smoke run
"""

from __future__ import annotations

import argparse
from typing import Any, Optional

import torch
from _common import (
    EMBEDDING_DIM,
    MIB,
    PeakMemory,
    add_common_arguments,
    default_out_path,
    interleaved_timings,
    markdown_table,
    median,
    merge_results,
    parse_and_set_up,
    payload_header,
    write_json,
)

from pyg_multirec.losses import MultiModalInfoNCE
from pyg_multirec.losses.infonce import DEFAULT_CACHE_BYTES, MICRO_TEMPERATURE, _block_rows

SCRIPT = "infonce"
DEFAULT_ITEMS = "1349,7050"  # items of ml100k's MMRec files and of Amazon Baby
QUICK_ITEMS = "120"
NUM_MODALITIES = 2  # image and text, as in MICRO's data sets
BLOCK_SIZE = 4096  # examples/micro.py's CONTRASTIVE_BLOCK_SIZE (1,024 rows on the CPU)
DEFAULT_REPEATS = 5


def block_bytes(num: int, block: int, num_modal: int, itemsize: int) -> list[int]:
    """Bytes of each exponential block of one forward, in the order they are formed: per
    row block of ``rows`` anchors from ``start``, ``(rows, N - start)`` right of the
    diagonal for the fused view against itself, then per modality a full ``(rows, N)``
    block against the fused view and ``(rows, N - start)`` against itself."""
    sizes = []
    for start in range(0, num, block):
        rows = min(block, num - start)
        sizes.append(rows * (num - start))
        sizes += [rows * num, rows * (num - start)] * num_modal
    return [size * itemsize for size in sizes]


def kept_bytes(sizes: list[int], budget: int) -> int:
    """Bytes the forward keeps with ``cache_bytes=budget``: each block that still fits in
    what is left of the budget, in order."""
    kept = 0
    for size in sizes:
        if kept + size <= budget:
            kept += size
    return kept


def run_size(num: int, device: torch.device, args: argparse.Namespace) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(args.seed)
    views = [torch.randn(num, EMBEDDING_DIM, generator=generator).to(device).requires_grad_()
             for _ in range(NUM_MODALITIES + 1)]
    *modal, fused = views
    sizes = block_bytes(num, _block_rows(BLOCK_SIZE, fused), NUM_MODALITIES,
                        fused.element_size())
    total = sum(sizes)
    settings = {"recompute (0)": 0, f"default ({DEFAULT_CACHE_BYTES // MIB} MiB)":
                DEFAULT_CACHE_BYTES, "all": total}
    losses = {name: MultiModalInfoNCE(MICRO_TEMPERATURE, BLOCK_SIZE, cache_bytes=cache)
              for name, cache in settings.items()}
    outputs: dict[str, list[torch.Tensor]] = {}

    def step(name: str):
        def call() -> None:
            loss = losses[name](modal, fused)
            grads = torch.autograd.grad(loss, views)
            outputs[name] = [loss.detach(), *grads]
        return call

    times = interleaved_timings({name: step(name) for name in settings}, device, args.repeats,
                                args.warmup)
    reference = outputs["recompute (0)"]
    rows = []
    for name, cache in settings.items():
        peak: Optional[float] = None
        if device.type == "cuda":
            with PeakMemory(device) as memory:
                step(name)()
            peak = memory.peak_extra_bytes / MIB
        rows.append({
            "items": num, "cache_bytes": name, "kept_mib": kept_bytes(sizes, cache) / MIB,
            "all_blocks_mib": total / MIB, "seconds": median(times[name]),
            "speedup": median(times["recompute (0)"]) / median(times[name]),
            "bitwise_same": all(torch.equal(a, b) for a, b in zip(outputs[name], reference)),
            "peak_extra_mib": peak,
        })  # fmt: skip
    return rows


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser, DEFAULT_REPEATS, merge_unit="item counts")
    parser.add_argument("--items", default=DEFAULT_ITEMS,
                        help=f"comma-separated item counts N (default: {DEFAULT_ITEMS})")
    args, device = parse_and_set_up(parser, argv)
    items = [int(n) for n in (QUICK_ITEMS if args.quick else args.items).split(",")]
    if any(n < 2 for n in items):
        raise ValueError(f"--items must be item counts >= 2 (got {args.items!r})")
    results = [row for num in items for row in run_size(num, device, args)]
    headers = ["items", "cache_bytes", "kept MiB", "all blocks MiB", "s (fwd + bwd)",
               "speed-up", "bitwise same", "peak extra MiB"]
    print(markdown_table(headers, [[r["items"], r["cache_bytes"], r["kept_mib"],
                                    r["all_blocks_mib"], r["seconds"], r["speedup"],
                                    r["bitwise_same"], r["peak_extra_mib"] or "-"]
                                   for r in results]))  # fmt: skip
    out = args.out or default_out_path(SCRIPT, device, args.quick)
    if args.merge:
        results = merge_results(out, results, ("items", "cache_bytes"))
    write_json(out, {**payload_header(SCRIPT, device, args.quick), "results": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
