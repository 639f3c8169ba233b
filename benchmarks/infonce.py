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
from pyg_multirec.losses.infonce import DEFAULT_CACHE_BYTES, MICRO_TEMPERATURE

SCRIPT = "infonce"
DEFAULT_ITEMS = "1349,7050"  # items of ml100k's MMRec files and of Amazon Baby
QUICK_ITEMS = "120"
NUM_MODALITIES = 2  # image and text, as in MICRO's data sets
BLOCK_SIZE = 4096  # examples/micro.py's CONTRASTIVE_BLOCK_SIZE (1,024 rows on the CPU)
DEFAULT_REPEATS = 5


def all_blocks_bytes(num: int, block: int, num_modal: int, itemsize: int) -> int:
    """Bytes of every exponential block of one forward: per row block of ``rows`` anchors
    from ``start``, ``num_modal`` full ``(rows, N)`` blocks and ``num_modal + 1`` blocks
    right of the diagonal, ``(rows, N - start)``."""
    total = 0
    for start in range(0, num, block):
        rows = min(block, num - start)
        total += rows * (num_modal * num + (num_modal + 1) * (num - start))
    return total * itemsize


def run_size(num: int, device: torch.device, args: argparse.Namespace) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(args.seed)
    views = [torch.randn(num, EMBEDDING_DIM, generator=generator).to(device).requires_grad_()
             for _ in range(NUM_MODALITIES + 1)]
    *modal, fused = views
    block = min(BLOCK_SIZE, 1024) if device.type == "cpu" else BLOCK_SIZE
    total = all_blocks_bytes(num, min(block, num), NUM_MODALITIES, fused.element_size())
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
            "items": num, "cache_bytes": name, "kept_mib": min(cache, total) / MIB,
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
