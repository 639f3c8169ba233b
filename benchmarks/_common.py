"""Helpers shared by the benchmark scripts: scales, command line, timing, memory, output.

Conventions of every script:

* a *scale* is one of the Amazon data sets used by the SEA and MICRO papers, reproduced in
  size by :class:`~pyg_multirec.datasets.SyntheticMultiModal` (``--quick`` swaps in a tiny
  one for a seconds-long smoke run);
* a timing is the median over ``--repeats`` calls after ``--warmup`` untimed calls; on CUDA the
  clock is read after :func:`torch.cuda.synchronize`;
* methods compared with each other are timed round-robin in the same process (repeat ``r`` of
  every method before repeat ``r + 1`` of any), so that load from other processes on a shared
  machine hits all of them alike, and every comparison is a ratio of two medians of one run;
* peak memory on CPU is the peak resident set size (``VmHWM``) of a process, reset after the
  data is in memory, minus the resident size at that moment; on CUDA it is
  :func:`torch.cuda.max_memory_allocated` minus the allocation at that moment;
* results are printed as Markdown tables and written to JSON (``--out``, by default
  ``benchmarks/results/<script>-<device>.json``);
* the scripts import the installed ``pyg_multirec``: run them from a checkout after
  ``pip install -e .`` to measure that checkout (they never edit ``sys.path``); the example
  models are loaded from ``examples/`` by path (:func:`load_example`).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO_ROOT / "examples"

IMAGE_DIM = 4096  # VGG/CNN image features of the Amazon data sets
TEXT_DIM = 384  # sentence-transformer text features
EMBEDDING_DIM = 64  # embedding size of SEA and MICRO
DEFAULT_REPEATS = 5
DEFAULT_WARMUP = 1
DEFAULT_SEED = 0
QUICK_REPEATS = 2

# /proc/self/status fields (kB) and the /proc/self/clear_refs code that resets VmHWM.
_STATUS_FILE = "/proc/self/status"
_CLEAR_REFS_FILE = "/proc/self/clear_refs"
_MEMINFO_FILE = "/proc/meminfo"
_RESET_PEAK_RSS = "5"
_KIB = 1024
MIB = 1024 * 1024
LARGE_NUMBER = 1000  # floats from here on are printed as integers with separators


def _load_script(path: Path, name: str) -> ModuleType:
    """The script at ``path`` imported as the module ``name``, once per process."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered first: dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def load_example(name: str) -> ModuleType:
    """The script ``examples/{name}.py`` as the module ``name`` (the examples are scripts,
    not a package)."""
    return _load_script(EXAMPLES_DIR / f"{name}.py", name)


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/{name}.py`` as the module ``name`` (e.g. ``models``)."""
    return _load_script(Path(__file__).resolve().parent / f"{name}.py", name)


@dataclass(frozen=True)
class Scale:
    """Size of one benchmark data set."""

    name: str
    num_users: int
    num_items: int
    num_interactions: int


SCALES: dict[str, Scale] = {
    "baby": Scale("baby", 19_445, 7_050, 160_792),
    "sports": Scale("sports", 35_598, 18_357, 296_337),
    "clothing": Scale("clothing", 39_387, 23_033, 278_677),
}
QUICK_SCALE = Scale("quick", 300, 120, 2_400)


# ----------------------------------------------------------------------------------------
# command line
def add_common_arguments(
    parser: argparse.ArgumentParser, default_repeats: int, merge_unit: str = "scales"
) -> None:
    """Adds ``--device --scales --repeats --warmup --quick --out --seed --threads --merge``
    to ``parser`` (``merge_unit`` names what ``--merge`` keeps, for its help)."""
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--scales",
        default=",".join(SCALES),
        help=f"comma-separated subset of {', '.join(SCALES)} (ignored with --quick)",
    )
    parser.add_argument("--repeats", type=int, default=default_repeats,
                        help="timed calls per method; the median is reported")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help="untimed calls per method before timing")
    parser.add_argument("--quick", action="store_true",
                        help="seconds-long smoke run on a tiny data set")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output (default: benchmarks/results/<script>-<device>.json)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--merge", action="store_true",
                        help=f"keep results of other {merge_unit} already in --out")


def parse_and_set_up(
    parser: argparse.ArgumentParser, argv: Optional[list[str]]
) -> tuple[argparse.Namespace, torch.device]:
    """Parses ``argv``, validates the common counts, applies ``--threads`` and resolves
    ``--device``: the first lines of every script's ``main``."""
    args = parser.parse_args(argv)
    check_counts(args)
    configure_threads(args.threads)
    return args, resolve_device(args.device)


def payload_header(script: str, device: torch.device, quick: bool) -> dict[str, Any]:
    """The fields every script's JSON starts with."""
    return {"script": script, "environment": environment(device), "quick": quick}


def parse_scales(text: str, quick: bool) -> list[Scale]:
    """The scales named in ``text`` (comma-separated), or the tiny one with ``quick``."""
    if quick:
        return [QUICK_SCALE]
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCALES]
    if unknown or not names:
        raise ValueError(f"--scales must name some of {list(SCALES)} (got {text!r})")
    return [SCALES[name] for name in names]


def check_counts(args: argparse.Namespace) -> None:
    """Validates ``--repeats`` and ``--warmup``."""
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1 (got {args.repeats})")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0 (got {args.warmup})")


def configure_threads(threads: Optional[int]) -> None:
    """Applies ``--threads`` (``None`` keeps torch's default)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1 (got {threads})")
        torch.set_num_threads(threads)


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``, refusing ``cuda`` where no GPU is available."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was given but torch.cuda.is_available() is False")
    return torch.device(name)


def default_out_path(script: str, device: torch.device, quick: bool) -> Path:
    suffix = "-quick" if quick else ""
    return RESULTS_DIR / f"{script}-{device.type}{suffix}.json"


# ----------------------------------------------------------------------------------------
# timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall-clock seconds of one call of ``fn`` (synchronised on CUDA)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved_timings(
    methods: Mapping[str, Callable[[], Any]],
    device: torch.device,
    repeats: int,
    warmup: int,
    before_each: Optional[Callable[[], None]] = None,
) -> dict[str, list[float]]:
    """Seconds per call of every method, round-robin: ``warmup`` untimed rounds, then
    ``repeats`` timed rounds, each calling every method once (``before_each`` runs untimed
    before every call, e.g. to clear gradients)."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_index in range(warmup + repeats):
        for name, fn in methods.items():
            if before_each is not None:
                before_each()
            seconds = time_call(fn, device)
            if round_index >= warmup:
                times[name].append(seconds)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ----------------------------------------------------------------------------------------
# memory
def _status_kib(field: str) -> int:
    with open(_STATUS_FILE) as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in {_STATUS_FILE}")


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux ``VmRSS``)."""
    return _status_kib("VmRSS") * _KIB


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since start or the last
    :func:`reset_peak_rss` (Linux ``VmHWM``)."""
    return _status_kib("VmHWM") * _KIB


def reset_peak_rss() -> bool:
    """Resets ``VmHWM`` to the current RSS (Linux >= 4.0); returns whether it worked. Without
    it, the peak also covers whatever happened before (data creation), an overestimate."""
    try:
        with open(_CLEAR_REFS_FILE, "w") as handle:
            handle.write(_RESET_PEAK_RSS)
    except OSError:
        return False
    return True


def available_memory_bytes(device: torch.device) -> int:
    """Memory free for new allocations: ``MemAvailable`` of ``/proc/meminfo`` on CPU, free
    device memory on CUDA."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open(_MEMINFO_FILE) as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * _KIB
    raise RuntimeError(f"MemAvailable not found in {_MEMINFO_FILE}")


class PeakMemory:
    """Peak extra memory of a block of code over the memory in use when it starts.

    CPU: peak RSS (``VmHWM``, reset on entry) minus the RSS on entry; this counts every
    allocation the process really touched (torch's CPU allocator returns large blocks to the
    system, and glibc maps them afresh), which :mod:`tracemalloc` would miss. Run one case per
    fresh process: RSS also grows with lazily loaded libraries and allocator caches.
    CUDA: :func:`torch.cuda.max_memory_allocated` minus the allocation on entry.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline_bytes = 0
        self.peak_extra_bytes = 0
        self.peak_was_reset = True

    def __enter__(self) -> PeakMemory:
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = torch.cuda.memory_allocated(self.device)
        else:
            self.peak_was_reset = reset_peak_rss()
            self.baseline_bytes = current_rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = peak_rss_bytes()
        self.peak_extra_bytes = max(0, peak - self.baseline_bytes)


# ----------------------------------------------------------------------------------------
# output
def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; floats are printed with 3 significant digits (no exponent)."""

    def cell(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "**no**"
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= LARGE_NUMBER else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and machine facts recorded with every result."""
    import torch_geometric

    info: dict[str, Any] = {
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def scale_dict(scale: Scale) -> dict[str, Any]:
    return asdict(scale)


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Writes ``payload`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def merge_results(path: Path, results: list[dict[str, Any]], key: Sequence[str]) -> list[Any]:
    """``results`` plus the entries of an earlier run in ``path`` whose ``key`` fields match
    none of them (used with ``--merge`` to run scales in separate invocations)."""
    if not path.is_file():
        return results
    old = json.loads(path.read_text()).get("results", [])
    new_keys = {tuple(entry[k] for k in key) for entry in results}
    kept = [entry for entry in old if tuple(entry.get(k) for k in key) not in new_keys]
    order = list(SCALES)
    return sorted(
        kept + results,
        key=lambda e: order.index(e["scale"]) if e.get("scale") in order else len(order),
    )
