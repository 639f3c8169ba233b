"""Data-parallel training across the processes started by ``torchrun``.

``torchrun --nproc-per-node N script.py ...`` starts ``N`` copies of a script with the
environment variables ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and the rendezvous
address) set. :func:`setup` reads them and joins the process group (``gloo`` on the CPU,
``nccl`` on GPUs, one GPU per process: ``cuda:LOCAL_RANK``); without them (a plain
``python script.py``) it returns a single-process :class:`Replicas` whose collectives are
no-ops, so single-process training is unchanged.

How :func:`pyg_multirec.train.train` uses it (see ``docs/distributed.md``):

* every process draws the same global BPR batch (same seed and epoch) and trains on its
  contiguous share (:meth:`Replicas.share`), each share's loss scaled by its fraction of
  the batch so that :class:`~torch.nn.parallel.DistributedDataParallel`'s gradient average
  equals the gradient of the global batch mean;
* auxiliary parameters fitted by their own optimizer (e.g.
  :class:`~pyg_multirec.losses.FittedCLUB`) are left out of DDP; an estimator keeps the
  same state on every process by fitting on the samples of all processes
  (:func:`gather_rows`), so it sees exactly what a single process would;
* rank 0 evaluates, writes histories and checkpoints and broadcasts its decision
  (continue, stop, or an error) to the others.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.modules.batchnorm import _NormBase

ENV_WORLD_SIZE, ENV_RANK, ENV_LOCAL_RANK = "WORLD_SIZE", "RANK", "LOCAL_RANK"

# Period of the position weights of check_in_step's checksums (a prime).
CHECKSUM_PERIOD = 7919

# Set while a data-parallel training step runs: only then does gather_rows communicate
# (evaluation, which rank 0 runs alone, must not start a collective).
_in_replicated_step = False


@dataclass(frozen=True)
class Replicas:
    """The processes training one model together (one process: ``world_size == 1``).

    Attributes:
        rank: this process's index, ``0 <= rank < world_size``.
        world_size: the number of processes.
        local_rank: this process's index on its machine (its GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process evaluates, writes files and logs (rank 0)."""
        return self.rank == 0

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.world_size != 0:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by the number of processes "
                f"{self.world_size}: every process trains on batch_size / world_size triples "
                f"of each global batch, so pass a multiple of {self.world_size}"
            )

    def share(self, size: int) -> tuple[slice, float]:
        """This process's rows of a global batch of ``size`` rows, and their fraction of it.

        Full batches split evenly (``batch_size`` is a multiple of ``world_size``); the
        last, smaller batch is split as evenly as possible. A process left without rows
        (a last batch smaller than ``world_size``) gets row 0 with weight 0, so it still
        takes part in the gradient all-reduce without changing it.
        """
        base, extra = divmod(size, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        stop = start + base + (1 if self.rank < extra else 0)
        if stop == start:
            return slice(0, 1), 0.0
        return slice(start, stop), (stop - start) / size

    def all_reduce_sum(self, tensor: Tensor) -> Tensor:
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        if not self.is_distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, by rank."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def on_main(self, fn: Callable[[], Any], share: bool = True) -> Any:
        """Runs ``fn`` on rank 0 only while the others wait; returns its result everywhere
        (``share=False``: on rank 0 only, ``None`` elsewhere).

        An exception in ``fn`` is re-raised on rank 0 and reported on the other processes
        as a :class:`RuntimeError`, so no process is left waiting for a collective.
        """
        result = None
        if self.is_main:
            try:
                result = fn()
            except BaseException as err:
                self.broadcast((None, f"{type(err).__name__}: {err}"))
                raise
        if not self.is_distributed:
            return result
        shared, error = self.broadcast((result if share else None, None))
        if error is not None:
            raise RuntimeError(f"rank 0 failed: {error}")
        return result if self.is_main else shared


def from_environment() -> Replicas:
    """The :class:`Replicas` described by ``torchrun``'s environment variables."""
    world_size = int(os.environ.get(ENV_WORLD_SIZE, "1"))
    if world_size <= 1:
        return Replicas()
    missing = [v for v in (ENV_RANK, ENV_LOCAL_RANK) if v not in os.environ]
    if missing:
        raise RuntimeError(
            f"{ENV_WORLD_SIZE}={world_size} is set but {missing} are not: start data-parallel "
            f"training with torchrun --nproc-per-node N"
        )
    return Replicas(int(os.environ[ENV_RANK]), world_size, int(os.environ[ENV_LOCAL_RANK]))


def setup(device: torch.device) -> tuple[Replicas, torch.device]:
    """Joins the process group described by the environment (if any and not joined yet).

    Returns the :class:`Replicas` and the device of this process (``cuda:LOCAL_RANK`` for
    a CUDA device under ``torchrun``). The group is created once per process and ended at
    exit, so one script may train several times (a process group cannot be re-created
    under the same ``torchrun`` rendezvous).
    """
    replicas = from_environment()
    if not replicas.is_distributed:
        return replicas, device
    if device.type == "cuda":
        device = torch.device("cuda", replicas.local_rank)
        torch.cuda.set_device(device)
    if dist.is_initialized():
        if dist.get_world_size() != replicas.world_size:
            raise RuntimeError(
                f"the process group has {dist.get_world_size()} processes but "
                f"{ENV_WORLD_SIZE}={replicas.world_size}"
            )
        return replicas, device
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    atexit.register(_end_process_group)
    return replicas, device


def _end_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def replicated_step(replicas: Replicas) -> Iterator[None]:
    """Marks a training step that every process runs (so :func:`gather_rows` may gather)."""
    global _in_replicated_step
    previous = _in_replicated_step
    _in_replicated_step = replicas.is_distributed
    try:
        yield
    finally:
        _in_replicated_step = previous


def gather_rows(x: Tensor) -> Tensor:
    """The rows of ``x`` of every process, concatenated in rank order (no gradient).

    Outside a data-parallel training step (single process, evaluation) it returns ``x``.
    The processes may hold different numbers of rows (the last batch of an epoch).
    """
    if not _in_replicated_step:
        return x
    x = x.detach().contiguous()
    world_size = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world_size)]
    dist.all_gather(sizes, torch.tensor([x.size(0)], device=x.device))
    rows = [int(s) for s in sizes]
    padded = x.new_zeros((max(rows), *x.shape[1:]))
    padded[: x.size(0)] = x
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, rows)])


def wrap_for_data_parallel(
    model: torch.nn.Module, replicas: Replicas, device: torch.device
) -> torch.nn.Module:
    """A module whose ``forward(users, pos, neg)`` is ``model.loss(...)``, wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel` when there are several processes.

    DDP all-reduces the gradients of the parameters that the trainer's optimizer updates.
    Left out of it: ``model.auxiliary_parameters()`` (fitted by their own optimizer; their
    initial values are broadcast from rank 0 here, see :func:`gather_rows` for how they
    stay in step) and all buffers (graphs and features derived from the data, identical on
    every process; :func:`check_in_step` verifies it). Parameters unused in a step (e.g. a
    loss switched off) are allowed (``find_unused_parameters=True``).
    """
    module = _LossOf(model)
    if not replicas.is_distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    aux = {id(p) for p in model.auxiliary_parameters()}
    ignored = [n for n, p in module.named_parameters() if id(p) in aux]
    ignored += [n for n, _ in module.named_buffers()]
    with torch.no_grad():
        for p in model.auxiliary_parameters():
            dist.broadcast(p.data, src=0)
    if not model.main_parameters():
        return module  # nothing for DDP to synchronise
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ignored)
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True,
    )


class _LossOf(torch.nn.Module):
    """Calls ``model.loss`` through ``forward``, so that DDP's hooks see the step."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> dict[str, Tensor]:
        return self.model.loss(users, pos_items, neg_items)


def average_running_statistics(model: torch.nn.Module, replicas: Replicas) -> None:
    """Averages the running mean and variance of every batch-norm layer over the processes.

    In training mode each process normalises its share of the batch with the share's own
    statistics (as DDP does; ``SyncBatchNorm`` would need GPUs), so the running estimates
    drift apart; the trainer averages them once per epoch, before rank 0 evaluates, so
    every process holds the same state again.
    """
    if not replicas.is_distributed:
        return
    for module in model.modules():
        if isinstance(module, _NormBase) and module.track_running_stats:
            for stat in (module.running_mean, module.running_var):
                if stat is not None:
                    dist.all_reduce(stat, op=dist.ReduceOp.SUM)
                    stat.div_(replicas.world_size)


def check_in_step(
    model: torch.nn.Module, replicas: Replicas, device: torch.device, what: str
) -> None:
    """Raises if the parameters and buffers of ``model`` differ between processes.

    Buffers include non-persistent ones, e.g. the neighbours of MICRO's learned item graph
    rebuilt by ``on_epoch_start``. Compares one float64 position-weighted sum per tensor
    (cheap, and a permutation of the entries changes it), with a relative tolerance of
    ``1e-6`` that allows non-deterministic reductions on GPUs.
    """
    if not replicas.is_distributed:
        return
    names, sums = [], []
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, value in tensors:
        if value is None:
            continue
        if value.is_sparse:
            value = value.coalesce().values()
        flat = value.detach().reshape(-1).double()
        position = torch.arange(flat.numel(), device=flat.device) % CHECKSUM_PERIOD
        names.append(name)
        sums.append((flat * (1.0 + position / CHECKSUM_PERIOD)).sum().to(device))
    if not sums:
        return
    mine = torch.stack(sums)
    everyone = [torch.empty_like(mine) for _ in range(replicas.world_size)]
    dist.all_gather(everyone, mine)
    reference = everyone[0]
    close = torch.stack(
        [torch.isclose(x, reference, rtol=1e-6, atol=0.0, equal_nan=True) for x in everyone]
    ).all(dim=0)
    if not bool(close.all()):
        differing = [n for n, ok in zip(names, close.tolist()) if not ok]
        raise RuntimeError(
            f"{what}: the model state differs between processes in {differing}; "
            f"data-parallel training needs every process "
            f"to build the same graphs and buffers from the same parameters"
        )
