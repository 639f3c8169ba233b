"""Whole models: seconds per training epoch, per full-ranking evaluation, and peak memory.

The example models (``examples/{mf,lightgcn,vbpr,micro,sea}.py``; SEA as variants a, b and d;
built by their own
``build(data, args)`` from the example's default arguments) are run at the sizes of Amazon
Baby / Sports / Clothing (:class:`~pyg_multirec.datasets.SyntheticMultiModal`, 4,096-d image
and 384-d text features, dim 64). Every (model, scale) runs in a fresh subprocess (``--quick``:
one subprocess for all models, so its memory figures are not meaningful) that loads the data
set saved once by the parent, then, inside one :class:`~_common.PeakMemory` block:

1. builds the model (kNN graphs of SEA / MICRO included);
2. times ``model.on_epoch_start(1)`` once;
3. runs ``--warmup`` untimed and ``--batches`` timed training steps: the real
   :class:`~pyg_multirec.sampling.BPRSampler` batch (each model's default batch size: 2,048,
   MICRO 1,024), ``model.loss`` (SEA-a's 50 inner CLUB steps included), backward, Adam step;
4. times ``pyg_multirec.evaluation.evaluate(model, data, 'valid')`` ``--repeats`` times.

Each training step is also timed in process CPU seconds (``step_cpu_times_s``,
``epoch_cpu_s``, of the timed epoch with ``--full-epoch``): on a shared, oversubscribed
machine with one torch thread, CPU time is much
steadier than wall time, so ratios between models (e.g. SEA-a / SEA-b) are read from it.
MICRO runs with its defaults (all-item contrastive loss, batch 1,024) as ``micro``; the
cases ``micro-batch`` (``--contrastive-items batch``), ``micro-2048`` and
``micro-batch-2048`` (``--batch-size 2048``), and ``micro-2048-first`` /
``micro-batch-2048-first`` (``--structure-grad first-batch``: the learned graphs get gradient
from the epoch's first batch only, as in the official code; time these with
``--full-epoch``, since their first step costs more than the median one) are not in the
default set.

**Seconds per epoch are extrapolated from N steps**: median step time x batches per epoch +
the ``on_epoch_start`` time (a full epoch of SEA / MICRO at Clothing size takes many minutes on
a CPU). Peak memory is the peak RSS over the post-data baseline on CPU, or
``torch.cuda.max_memory_allocated`` over the allocation at that moment on CUDA. Beside ours,
the SEA paper's Table 5 figures (measured by its authors on a GPU) are printed. ``--threads``
defaults to 1: the benchmark machine is shared and oversubscribed, and one thread keeps the
timings steadier. ``--profile`` adds a ``torch.profiler`` run of one more training step (top
operators by self CPU time into the JSON and the log; inside the memory block).
Target: SEA (variants a and d) peak memory at Clothing size <= 2 GB (paper: 13.78 GB for
SEA-a).

Usage::

    python benchmarks/models.py --scales baby --batches 10
    python benchmarks/models.py --scales clothing --models sea-a,sea-d --merge
    python benchmarks/models.py --quick
    python benchmarks/models.py --dataset ml100k --data-root ../shared/data \
        --models sea-a,sea-b --interleave
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import (
    IMAGE_DIM,
    MIB,
    TEXT_DIM,
    PeakMemory,
    Scale,
    add_common_arguments,
    default_out_path,
    load_example,
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

SCRIPT = "models"
# model name -> (example module, extra command-line flags of its ``train`` sub-command)
MODELS: dict[str, tuple[str, list[str]]] = {
    "mf": ("mf", []),
    "lightgcn": ("lightgcn", []),
    "vbpr": ("vbpr", []),
    "micro": ("micro", ["--backbone", "lightgcn"]),
    "sea-a": ("sea", ["--variant", "a"]),
    "sea-b": ("sea", ["--variant", "b"]),
    "sea-d": ("sea", ["--variant", "d"]),
}
# Further cases, run only when named in --models: MICRO's cheaper contrastive loss and batch.
EXTRA_MODELS: dict[str, tuple[str, list[str]]] = {
    "micro-batch": ("micro", ["--backbone", "lightgcn", "--contrastive-items", "batch"]),
    "micro-2048": ("micro", ["--backbone", "lightgcn", "--batch-size", "2048"]),
    "micro-batch-2048": (
        "micro", ["--backbone", "lightgcn", "--contrastive-items", "batch", "--batch-size", "2048"]
    ),
    "micro-2048-first": (
        "micro", ["--backbone", "lightgcn", "--batch-size", "2048", "--structure-grad",
                  "first-batch"]
    ),
    "micro-batch-2048-first": (
        "micro", ["--backbone", "lightgcn", "--contrastive-items", "batch", "--batch-size", "2048",
                  "--structure-grad", "first-batch"]
    ),
}
ALL_MODELS = {**MODELS, **EXTRA_MODELS}
DEFAULT_BATCHES = 10
DEFAULT_WARMUP_STEPS = 2
DEFAULT_EVAL_REPEATS = 1
DEFAULT_THREADS = 1  # the benchmark machine is shared; one thread keeps timings comparable
QUICK_BATCHES = 2
QUICK_WARMUP = 1
GB = 1e9  # the paper's memory figures are in GB
TARGET_SCALE = "clothing"
TARGET_MODELS = ("sea-a", "sea-d")
MEMORY_TARGET_GB = 2.0
CHILD_TIMEOUT_S = 3600
PROFILE_TOP_OPS = 10
# SEA paper, Table 5 (GPU): (memory GB, seconds per epoch); MICRO is not in that table.
PAPER_TABLE5: dict[str, dict[str, tuple[float, float]]] = {
    "baby": {"mf": (1.59, 0.86), "lightgcn": (1.69, 1.81), "vbpr": (1.89, 1.04),
             "sea-d": (2.54, 4.58), "sea-a": (3.42, 16.04)},
    "sports": {"mf": (2.00, 1.24), "lightgcn": (2.24, 3.74), "vbpr": (2.71, 1.67),
               "sea-d": (3.94, 16.13), "sea-a": (8.83, 58.81)},
    "clothing": {"mf": (2.16, 1.52), "lightgcn": (2.43, 4.58), "vbpr": (3.02, 2.02),
                 "sea-d": (4.69, 23.59), "sea-a": (13.78, 57.35)},
}


# ----------------------------------------------------------------------------------------
# one (model, scale) case, in a fresh process
def example_args(
    model_name: str, device: torch.device, seed: int
) -> tuple[Any, argparse.Namespace]:
    """The example module of ``model_name`` and the Namespace its ``train`` sub-command
    parses from the example's defaults (plus the model's flags)."""
    from pyg_multirec.experiment import build_parser

    module_name, flags = ALL_MODELS[model_name]
    module = load_example(module_name)
    parser = build_parser(module_name, module.add_arguments, getattr(module, "DEFAULTS", None))
    argv = ["train", *flags, "--device", device.type, "--seed", str(seed), "--quiet"]
    return module, parser.parse_args(argv)


def _wall_and_cpu(fn: Any, device: torch.device) -> tuple[float, float]:
    """Wall-clock seconds (:func:`time_call`) and process CPU seconds of one call."""
    cpu = time.process_time()
    wall = time_call(fn, device)
    return wall, time.process_time() - cpu


def _cycle(sampler: Any) -> Any:
    """Batches of ``sampler``, epoch after epoch (a tiny data set has fewer batches than the
    steps to time)."""
    while True:
        yield from sampler


def _profile_step(step: Any, device: torch.device) -> list[dict[str, Any]]:
    """The operators of one training step by self time (``torch.profiler``), most costly first
    (``PROFILE_TOP_OPS`` of them): self device time on CUDA (the host mostly waits there),
    self CPU time otherwise."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    on_cuda = device.type == "cuda"
    if on_cuda:
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        time_call(step, device)

    def self_time(e: Any) -> float:
        return e.self_device_time_total if on_cuda else e.self_cpu_time_total

    events = sorted(prof.key_averages(), key=self_time, reverse=True)
    total = sum(self_time(e) for e in events) or 1.0
    return [
        {"op": e.key, "calls": e.count, "self_cpu_s": e.self_cpu_time_total / 1e6,
         "self_device_s": e.self_device_time_total / 1e6, "sorted_by": (
             "self_device_s" if on_cuda else "self_cpu_s"), "share": self_time(e) / total}
        for e in events[:PROFILE_TOP_OPS]
    ]


def _set_up_case(model_name: str, data: Any, device: torch.device, seed: int) -> dict[str, Any]:
    """Builds one model with its optimizer and sampler; ``step`` runs one training step."""
    from pyg_multirec.losses import value_checks
    from pyg_multirec.sampling import BPRSampler
    from pyg_multirec.train import seed_everything

    module, args = example_args(model_name, device, seed)
    seed_everything(seed)
    num_users, num_items = data["user"].num_nodes, data["item"].num_nodes
    start = time.perf_counter()
    model = module.build(data, args).to(device)
    build_s = time.perf_counter() - start
    optimizer = torch.optim.Adam(model.main_parameters(), lr=args.lr,
                                 weight_decay=args.weight_decay)
    sampler = BPRSampler(data["user", "train", "item"].edge_index.cpu(), num_users,
                         num_items, args.batch_size, seed=seed)
    model.train()
    batches_iter = _cycle(sampler)
    # as the trainer: no per-loss NaN scans (host syncs) on accelerators
    scans = device.type == "cpu"

    def train_on(users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> None:
        with value_checks(scans):
            loss = model.loss(users.to(device), pos.to(device), neg.to(device))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return {"model": model, "args": args, "sampler": sampler, "build_s": build_s,
            "train_on": train_on, "step": lambda: train_on(*next(batches_iter))}


def run_case(
    model_name: str, data_file: Path, device: torch.device, batches: int, warmup: int,
    eval_repeats: int, seed: int, profile_ops: int = 0, full_epoch: bool = False,
) -> dict[str, Any]:
    """Builds, trains ``warmup + batches`` steps and evaluates one model; times and memory."""
    from pyg_multirec.evaluation import evaluate

    data = torch.load(data_file, weights_only=False).to(device)
    with PeakMemory(device) as memory:
        case = _set_up_case(model_name, data, device, seed)
        model, args, sampler, step = case["model"], case["args"], case["sampler"], case["step"]
        build_s = case["build_s"]
        epoch_start_s, epoch_start_cpu_s = _wall_and_cpu(lambda: model.on_epoch_start(1), device)
        steps = warmup + batches
        timed = [_wall_and_cpu(step, device) for _ in range(steps)][warmup:]
        times, cpu_times = [w for w, _ in timed], [c for _, c in timed]
        measured_epoch_s = measured_epoch_cpu_s = None
        if full_epoch:  # one real epoch: on_epoch_start + every batch of a fresh pass

            def epoch() -> None:
                model.on_epoch_start(2)
                sampler.set_epoch(2)
                for users, pos, neg in sampler:
                    case["train_on"](users, pos, neg)

            measured_epoch_s, measured_epoch_cpu_s = _wall_and_cpu(epoch, device)
        eval_times = [
            time_call(lambda: evaluate(model, data, "valid"), device) for _ in range(eval_repeats)
        ]
        profile = _profile_step(step, device) if profile_ops else None
    step_s = median(times)
    step_cpu_s = median(cpu_times)
    return {
        "profile_top_ops": profile,
        "model": model_name,
        "batch_size": args.batch_size,
        "batches_per_epoch": len(sampler),
        "timed_batches": len(times),
        "warmup_batches": steps - len(times),
        "build_s": build_s,
        "on_epoch_start_s": epoch_start_s,
        "step_times_s": times,
        "median_step_s": step_s,
        "step_cpu_times_s": cpu_times,
        "median_step_cpu_s": step_cpu_s,
        "epoch_cpu_s": (
            measured_epoch_cpu_s if full_epoch else step_cpu_s * len(sampler) + epoch_start_cpu_s
        ),
        "epoch_s": (
            measured_epoch_s if full_epoch else step_s * len(sampler) + epoch_start_s
        ),
        "epoch_s_method": (
            "one full epoch, timed" if full_epoch else f"extrapolated from {len(times)} steps"
        ),
        "eval_times_s": eval_times,
        "eval_s": median(eval_times),
        "peak_extra_bytes": memory.peak_extra_bytes,
        "baseline_bytes": memory.baseline_bytes,
        "peak_reset": memory.peak_was_reset,
    }


def run_interleaved(
    model_names: list[str], data_file: Path, device: torch.device, batches: int, warmup: int,
    seed: int,
) -> list[dict[str, Any]]:
    """``--interleave``: all models built in one process, their training steps alternated
    (model 1, model 2, ..., model 1, ...), so that the load of a shared machine falls on all
    of them alike; step times only (no evaluation, no memory figures)."""
    data = torch.load(data_file, weights_only=False).to(device)
    cases = [_set_up_case(name, data, device, seed) for name in model_names]
    epoch_start = [_wall_and_cpu(lambda c=c: c["model"].on_epoch_start(1), device)
                   for c in cases]
    timed: list[list[tuple[float, float]]] = [[] for _ in cases]
    for i in range(warmup + batches):
        for case, times in zip(cases, timed):
            result = _wall_and_cpu(case["step"], device)
            if i >= warmup:
                times.append(result)
    results = []
    for name, case, times, (start_s, start_cpu_s) in zip(model_names, cases, timed,
                                                          epoch_start):
        wall, cpu = [w for w, _ in times], [c for _, c in times]
        per_epoch = len(case["sampler"])
        results.append({
            "model": name, "batch_size": case["args"].batch_size, "batches_per_epoch": per_epoch,
            "timed_batches": len(times), "warmup_batches": warmup, "build_s": case["build_s"],
            "on_epoch_start_s": start_s, "step_times_s": wall, "median_step_s": median(wall),
            "step_cpu_times_s": cpu, "median_step_cpu_s": median(cpu),
            "epoch_s": median(wall) * per_epoch + start_s,
            "epoch_cpu_s": median(cpu) * per_epoch + start_cpu_s,
            "epoch_s_method": f"extrapolated from {len(times)} interleaved steps",
            "profile_top_ops": None, "eval_times_s": [], "eval_s": None,
            "peak_extra_bytes": None, "baseline_bytes": None, "peak_reset": False,
        })
    return results


# ----------------------------------------------------------------------------------------
# the parent: data once per scale, one subprocess per model
def load_real(name: str, root: str) -> tuple[Scale, Any]:
    """``--dataset``: an MMRec folder ``root/name`` as a scale (its training interactions)
    and its data."""
    from pyg_multirec.datasets import load_dataset

    data = load_dataset(name, root)
    train = data["user", "train", "item"].edge_index.size(1)
    return Scale(name, data["user"].num_nodes, data["item"].num_nodes, train), data


def make_data_file(scale: Scale, seed: int, workdir: Path, data: Any = None) -> Path:
    from pyg_multirec.datasets import SyntheticMultiModal

    start = time.perf_counter()
    if data is None:
        data = SyntheticMultiModal(
            num_users=scale.num_users,
            num_items=scale.num_items,
            num_interactions=scale.num_interactions,
            modality_dims={"image": IMAGE_DIM, "text": TEXT_DIM},
            seed=seed,
        )[0]
    path = workdir / f"{scale.name}.pt"
    torch.save(data, path)
    print(f"[{scale.name}] data set generated ({time.perf_counter() - start:.1f} s)", flush=True)
    return path


def run_scale(scale: Scale, models: list[str], args: argparse.Namespace,
              workdir: Path, data: Any = None) -> list[dict[str, Any]]:
    data_file = make_data_file(scale, args.seed, workdir, data)
    entries = []
    # One fresh process per model; --quick saves process starts with one for all.
    groups = [models] if args.quick or args.interleave else [[name] for name in models]
    for group in groups:
        result_file = workdir / f"{scale.name}-{'-'.join(group)}.json"
        command = [
            sys.executable, str(Path(__file__).resolve()), "--case", ",".join(group),
            "--data", str(data_file), "--result", str(result_file),
            "--device", args.device, "--batches", str(args.batches),
            "--warmup", str(args.warmup), "--repeats", str(args.repeats),
            "--seed", str(args.seed), "--threads", str(args.threads),
            *(["--profile"] if args.profile else []),
            *(["--full-epoch"] if args.full_epoch else []),
            *(["--interleave"] if args.interleave else []),
        ]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"case {group} at {scale.name} failed:\n{proc.stdout}{proc.stderr}")
        written = json.loads(result_file.read_text())
        for result in written["cases"] if "cases" in written else [written]:
            entries.append(_entry(scale, result))
            _report(entries[-1], time.perf_counter() - start)
    return entries


def _entry(scale: Scale, result: dict[str, Any]) -> dict[str, Any]:
    entry = {"scale": scale.name, **scale_dict(scale), **result}
    paper = PAPER_TABLE5.get(scale.name, {}).get(entry["model"])
    entry["paper_table5_gpu"] = (
        {"memory_gb": paper[0], "epoch_s": paper[1]} if paper is not None else None
    )
    return entry


def _report(entry: dict[str, Any], seconds: float) -> None:
    evaluation = "" if entry["eval_s"] is None else f", eval {entry['eval_s']:.2f} s"
    peak = entry["peak_extra_bytes"]
    memory = "" if peak is None else f", peak {peak / MIB:.0f} MiB"
    print(f"[{entry['scale']}] {entry['model']}: step {entry['median_step_s']:.3f} s "
          f"(CPU {entry['median_step_cpu_s']:.3f} s), epoch {entry['epoch_s']:.1f} s "
          f"({entry['epoch_s_method']}; CPU {entry['epoch_cpu_s']:.1f} s){evaluation}{memory} "
          f"({seconds:.0f} s in the process so far)", flush=True)
    for op in entry.get("profile_top_ops") or []:
        key = op.get("sorted_by", "self_cpu_s")
        print(f"    {op['op'][:60]:<60} {op['calls']:>6} calls {op[key]:8.4f} s {key} "
              f"{100 * op['share']:5.1f} %", flush=True)


def table(entries: list[dict[str, Any]]) -> str:
    headers = [
        "scale", "items", "model", "batch", "batches/epoch", "s/step (median)",
        "s/epoch", "s/epoch method", "CPU s/epoch", "N", "s/eval (full ranking)", "peak extra (GB)",
        "paper Table 5 GPU: GB", "paper Table 5 GPU: s/epoch",
    ]
    rows = []
    for e in entries:
        paper = e.get("paper_table5_gpu") or {}
        rows.append([
            e["scale"], e["num_items"], e["model"], e["batch_size"], e["batches_per_epoch"],
            e["median_step_s"], e["epoch_s"], e.get("epoch_s_method", "extrapolated"),
            e.get("epoch_cpu_s", "-"), e["timed_batches"], _or_dash(e["eval_s"]),
            "-" if e["peak_extra_bytes"] is None else e["peak_extra_bytes"] / GB,
            paper.get("memory_gb", "-"), paper.get("epoch_s", "-"),
        ])
    return markdown_table(headers, rows)


def _or_dash(value: Any) -> Any:
    return "-" if value is None else value


def memory_target(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """SEA's peak memory at the target scale against the target (None where not run)."""
    cases = {e["model"]: e["peak_extra_bytes"] / GB for e in entries
             if e["scale"] == TARGET_SCALE and e["model"] in TARGET_MODELS
             and e["peak_extra_bytes"] is not None}
    return {
        "scale": TARGET_SCALE,
        "target_gb": MEMORY_TARGET_GB,
        "peak_gb": cases,
        "met": all(v <= MEMORY_TARGET_GB for v in cases.values()) if cases else None,
    }


def parse_models(text: str) -> list[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_MODELS]
    if unknown or not names:
        raise ValueError(f"--models must name some of {list(ALL_MODELS)} (got {text!r})")
    return names


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from pyg_multirec.experiment import default_data_root

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, DEFAULT_EVAL_REPEATS, merge_unit="(scale, model) pairs")
    parser.set_defaults(threads=DEFAULT_THREADS, warmup=DEFAULT_WARMUP_STEPS)
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {', '.join(ALL_MODELS)} (default: "
                        f"{', '.join(MODELS)})")
    parser.add_argument("--batches", type=int, default=DEFAULT_BATCHES,
                        help="timed training steps per model (after --warmup untimed ones)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one training step (torch.profiler), top ops to JSON")
    parser.add_argument("--full-epoch", action="store_true",
                        help="time one real epoch after the timed steps (instead of "
                        "extrapolating s/epoch from them)")
    parser.add_argument("--interleave", action="store_true",
                        help="build all models in one process and alternate their training "
                        "steps (steadier ratios on a loaded machine; no evaluation or memory)")
    parser.add_argument("--dataset", default=None,
                        help="an MMRec folder under --data-root (e.g. ml100k) instead of the "
                        "synthetic --scales")
    parser.add_argument("--data-root", default=default_data_root(),
                        help="folder holding MMRec datasets (default: ../shared/data)")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args, device = parse_and_set_up(parser, argv)
    if args.batches < 1:
        raise ValueError(f"--batches must be >= 1 (got {args.batches})")

    if args.case is not None:  # child process
        if args.data is None or not args.data.is_file():
            raise FileNotFoundError(f"--case needs --data FILE (got {args.data})")
        if args.interleave:
            cases = run_interleaved(parse_models(args.case), args.data, device, args.batches,
                                    args.warmup, args.seed)
        else:
            cases = [
                run_case(name, args.data, device, args.batches, args.warmup, args.repeats,
                         args.seed, PROFILE_TOP_OPS * args.profile, args.full_epoch)
                for name in parse_models(args.case)
            ]
        # one case: its result; several (--quick): {"cases": [...]}
        written = cases[0] if len(cases) == 1 else {"cases": cases}
        write_json(args.result, written)
        return written

    if args.quick:
        args.batches, args.warmup = QUICK_BATCHES, QUICK_WARMUP
    models = parse_models(args.models)
    real = load_real(args.dataset, args.data_root) if args.dataset else None
    scales = [real[0]] if real is not None else parse_scales(args.scales, args.quick)
    out = args.out or default_out_path(SCRIPT, device, args.quick)
    payload: dict[str, Any] = {
        **payload_header(SCRIPT, device, args.quick),
        "batches": args.batches,
        "warmup": args.warmup,
        "eval_repeats": args.repeats,
        "seed": args.seed,
        "epoch_s_method": (
            "one full epoch, timed" if args.full_epoch else
            f"extrapolated from {args.batches} steps: median step time x batches per epoch "
            "+ on_epoch_start time"
        ),
        "memory_measure": "peak RSS over the post-data baseline (CPU) / "
                          "max_memory_allocated over the baseline (CUDA), one process per case",
        "paper_note": "paper_table5_gpu: SEA paper Table 5, measured on a GPU (not by us)",
        "results": [],
    }
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in scales:
            results += run_scale(scale, models, args, Path(tmp),
                                 real[1] if real is not None else None)
            payload["results"] = (
                merge_results(out, results, ("scale", "model")) if args.merge else results
            )
            payload["memory_target"] = memory_target(payload["results"])
            write_json(out, payload)

    print()
    how = ("timed over one full epoch" if args.full_epoch
           else f"extrapolated from {args.batches} steps after {args.warmup} warm-up")
    print(f"Training and evaluation, {device.type}, {args.threads} thread(s); s/epoch {how}:")
    print(table(payload["results"]))
    target = payload["memory_target"]
    print(f"\nSEA peak memory at {TARGET_SCALE} <= {MEMORY_TARGET_GB:g} GB (paper SEA-a 13.78 "
          f"GB): {target['peak_gb'] or 'not run'} -> met: {target['met']}")
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    main()
