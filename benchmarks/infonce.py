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

Two optional comparisons join the same round-robin, each at the default cache:
``--cpu-rows 128,1024`` times other caps on the anchor rows of a CPU block
(``CPU_MAX_BLOCK_ROWS``, picked on this script's figures), and ``--against FILE`` times
another version of ``pyg_multirec/losses/infonce.py`` (for example the one before a change,
``git show REV:pyg_multirec/losses/infonce.py > FILE``). Their ``max rel. diff`` column is the
largest difference of loss and gradients from the recomputing run, relative to each tensor's
largest entry (float rounding: a different order of sums).

Usage::

    python benchmarks/infonce.py                        # 1,349 (ml100k) and 7,050 (Baby) items
    python benchmarks/infonce.py --items 23033 --device cuda
    python benchmarks/infonce.py --cpu-rows 64,256,1024 --against /tmp/infonce_old.py
    python benchmarks/infonce.py --quick                # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
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
from pyg_multirec.losses import infonce as infonce_module
from pyg_multirec.losses.infonce import DEFAULT_CACHE_BYTES, MICRO_TEMPERATURE, _block_rows

SCRIPT = "infonce"
DEFAULT_ITEMS = "1349,7050"  # items of ml100k's MMRec files and of Amazon Baby
QUICK_ITEMS = "120"
NUM_MODALITIES = 2  # image and text, as in MICRO's data sets
BLOCK_SIZE = 4096  # examples/micro.py's CONTRASTIVE_BLOCK_SIZE (capped on the CPU)
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


def load_module(path: Path) -> ModuleType:
    """Another version of ``pyg_multirec/losses/infonce.py``, imported from ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"--against: no such file {str(path)!r}")
    spec = importlib.util.spec_from_file_location("infonce_against", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "MultiModalInfoNCE"):
        raise ValueError(f"--against: {str(path)!r} defines no MultiModalInfoNCE")
    return module


def max_relative_difference(tensors: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """Largest ``|a - b|`` over each pair of tensors, relative to ``b``'s largest entry."""
    return max(float((a - b).abs().max() / b.abs().max().clamp_min(torch.finfo(b.dtype).tiny))
               for a, b in zip(tensors, reference))


def run_size(num: int, device: torch.device, args: argparse.Namespace) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(args.seed)
    views = [torch.randn(num, EMBEDDING_DIM, generator=generator).to(device).requires_grad_()
             for _ in range(NUM_MODALITIES + 1)]
    *modal, fused = views
    sizes = block_bytes(num, _block_rows(BLOCK_SIZE, fused), NUM_MODALITIES,
                        fused.element_size())
    total = sum(sizes)
    default = f"default ({DEFAULT_CACHE_BYTES // MIB} MiB)"
    settings = {"recompute (0)": 0, default: DEFAULT_CACHE_BYTES, "all": total}
    # name -> (loss, CPU row cap to set during the call or None, (kept, all) block bytes or
    # None where unknown)
    Method = tuple[Callable[..., torch.Tensor], Optional[int], Optional[tuple[int, int]]]
    methods: dict[str, Method] = {
        name: (MultiModalInfoNCE(MICRO_TEMPERATURE, BLOCK_SIZE, cache_bytes=cache), None,
               (kept_bytes(sizes, cache), total))
        for name, cache in settings.items()
    }
    for rows in args.cpu_rows:
        row_sizes = block_bytes(num, min(rows, BLOCK_SIZE, num), NUM_MODALITIES,
                                fused.element_size())
        methods[f"default, {rows}-row CPU blocks"] = (
            MultiModalInfoNCE(MICRO_TEMPERATURE, BLOCK_SIZE), rows,
            (kept_bytes(row_sizes, DEFAULT_CACHE_BYTES), sum(row_sizes)))
    if args.against is not None:
        other = load_module(args.against).MultiModalInfoNCE(MICRO_TEMPERATURE, BLOCK_SIZE)
        methods[f"default, {args.against.name}"] = (other, None, None)
    outputs: dict[str, list[torch.Tensor]] = {}

    def step(name: str):
        loss_fn, rows, _ = methods[name]

        def call() -> None:
            cap = infonce_module.CPU_MAX_BLOCK_ROWS
            if rows is not None:
                infonce_module.CPU_MAX_BLOCK_ROWS = rows
            try:
                loss = loss_fn(modal, fused)
                grads = torch.autograd.grad(loss, views)
            finally:
                infonce_module.CPU_MAX_BLOCK_ROWS = cap
            outputs[name] = [loss.detach(), *grads]
        return call

    times = interleaved_timings({name: step(name) for name in methods}, device, args.repeats,
                                args.warmup)
    reference = outputs["recompute (0)"]
    results = []
    for name, (_, _, block_sizes) in methods.items():
        peak: Optional[float] = None
        if device.type == "cuda":
            with PeakMemory(device) as memory:
                step(name)()
            peak = memory.peak_extra_bytes / MIB
        results.append({
            "items": num, "cache_bytes": name,
            "kept_mib": None if block_sizes is None else block_sizes[0] / MIB,
            "all_blocks_mib": None if block_sizes is None else block_sizes[1] / MIB,
            "seconds": median(times[name]),
            "speedup": median(times["recompute (0)"]) / median(times[name]),
            "bitwise_same": all(torch.equal(a, b) for a, b in zip(outputs[name], reference)),
            "max_rel_diff": max_relative_difference(outputs[name], reference),
            "peak_extra_mib": peak,
        })  # fmt: skip
    return results


def _row_counts(text: str) -> list[int]:
    rows = [int(n) for n in text.split(",") if n.strip()] if text else []
    if any(n < 1 for n in rows):
        raise ValueError(f"--cpu-rows must be positive row counts (got {text!r})")
    return rows


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser, DEFAULT_REPEATS, merge_unit="item counts")
    parser.add_argument("--items", default=DEFAULT_ITEMS,
                        help=f"comma-separated item counts N (default: {DEFAULT_ITEMS})")
    parser.add_argument("--cpu-rows", default="",
                        help="comma-separated caps on a CPU block's anchor rows to time too")
    parser.add_argument("--against", type=Path, default=None,
                        help="another version of pyg_multirec/losses/infonce.py to time too")
    args, device = parse_and_set_up(parser, argv)
    args.cpu_rows = _row_counts(args.cpu_rows)
    items = [int(n) for n in (QUICK_ITEMS if args.quick else args.items).split(",")]
    if any(n < 2 for n in items):
        raise ValueError(f"--items must be item counts >= 2 (got {args.items!r})")
    results = [row for num in items for row in run_size(num, device, args)]
    headers = ["items", "cache_bytes", "kept MiB", "all blocks MiB", "s (fwd + bwd)",
               "speed-up", "bitwise same", "max rel. diff", "peak extra MiB"]
    print(markdown_table(headers, [[r["items"], r["cache_bytes"],
                                    *["-" if r[key] is None else r[key]
                                      for key in ("kept_mib", "all_blocks_mib")],
                                    r["seconds"], r["speedup"],
                                    r["bitwise_same"], r["max_rel_diff"],
                                    r["peak_extra_mib"] or "-"]
                                   for r in results]))  # fmt: skip
    out = args.out or default_out_path(SCRIPT, device, args.quick)
    if args.merge:
        results = merge_results(out, results, ("items", "cache_bytes"))
    write_json(out, {**payload_header(SCRIPT, device, args.quick), "results": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
