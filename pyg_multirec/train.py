"""Training loop: Adam on BPR batches, full-ranking validation, early stopping.

:func:`train` reads top to bottom as: check the arguments, set up (optimizer, sampler,
:class:`EarlyStopping`, a resumed :class:`~pyg_multirec.checkpoint.TrainingState`), then
one :func:`train_epoch` and one validation per epoch, and finally the best parameters are
restored and tested.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from pyg_multirec import distributed
from pyg_multirec._checks import check_count
from pyg_multirec.checkpoint import CHECKPOINT_VERSION, TrainingState, rng_state
from pyg_multirec.distributed import Replicas
from pyg_multirec.evaluation import evaluate
from pyg_multirec.losses import value_checks
from pyg_multirec.models import Recommender
from pyg_multirec.sampling import PAIR_SAMPLING, BPRSampler, check_item_ids

__all__ = [
    "CHECKPOINT_VERSION",
    "EarlyStopping",
    "TrainResult",
    "TrainingState",
    "resolve_device",
    "seed_everything",
    "train",
    "train_epoch",
]

TRAIN_EDGE = ("user", "train", "item")
#: Multiplier separating the per-epoch sampler seeds of different run seeds.
EPOCH_SEED_STRIDE = 1_000_003
# On an accelerator, the loss is read back (finite check, progress bar) every this many steps.
DEVICE_SYNC_EVERY = 20
METRIC_NAMES = ("recall", "ndcg", "precision", "map", "hit")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        best_epoch: the epoch (1-based) with the best validation metric.
        best_valid: validation metrics at that epoch.
        test: test metrics of the restored best model (``{}`` with ``evaluate_test=False``).
        history: one dictionary per epoch (losses, validation metrics, seconds).
        seconds_per_epoch: mean wall time of the training part of an epoch.
        stopped_early: whether patience ran out before ``epochs``.
    """

    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds_per_epoch: float = 0.0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and PyTorch (CPU and CUDA) random generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``'cuda'`` when asked for and available, else a clear error; ``None`` means CPU."""
    if device is None:
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch.cuda.is_available() is False")
    return device


def state_to_cpu(model: torch.nn.Module) -> dict[str, Any]:
    """A copy of ``model.state_dict()`` that later training steps cannot change.

    Tensors are copied to the CPU; extra state (any object, see ``get_extra_state``) is
    deep-copied.
    """
    return {
        k: v.detach().to("cpu", copy=True) if isinstance(v, Tensor) else copy.deepcopy(v)
        for k, v in model.state_dict().items()
    }


class EarlyStopping:
    """Keeps the best value of a validation metric, the parameters that reached it, and
    the number of epochs since it last improved (MMRec: stop after ``patience`` of them).

    Args:
        monitor: the metric to maximise, e.g. ``'recall@20'``.
        patience: epochs without improvement before :attr:`should_stop` (``0``: never).
    """

    def __init__(self, monitor: str, patience: int) -> None:
        self.monitor, self.patience = monitor, patience
        self.best_value = -math.inf
        self.best_epoch = 0
        self.best_valid: dict[str, float] = {}
        self.best_state: dict[str, Any] | None = None
        self.bad_epochs = 0

    def update(self, epoch: int, valid: dict[str, float], model: torch.nn.Module) -> bool:
        """Records the metrics of ``epoch``; keeps ``model``'s parameters if they are the best."""
        if valid[self.monitor] > self.best_value:
            self.best_value, self.best_epoch, self.best_valid = valid[self.monitor], epoch, valid
            self.best_state, self.bad_epochs = state_to_cpu(model), 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "best_valid": self.best_valid,
            "best_state": self.best_state,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class _Log:
    """Per-epoch reporting: tqdm bars on a terminal, one plain line per epoch otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.interactive = enabled and _isatty(sys.stderr)

    def bar(self, total: int, epoch: int) -> tqdm:
        return tqdm(total=total, desc=f"epoch {epoch}", disable=not self.interactive, leave=False)

    def epoch(self, row: dict[str, float], stopper: EarlyStopping) -> None:
        if not self.enabled:
            return
        line = (
            f"epoch {int(row['epoch']):4d}  loss {row.get('train_loss', math.nan):.4f}  "
            f"valid {stopper.monitor} {row[f'valid_{stopper.monitor}']:.4f}  "
            f"best {stopper.best_value:.4f} (epoch {stopper.best_epoch})  {row['seconds']:.2f}s"
        )
        if self.interactive:
            tqdm.write(line)
        else:
            print(line, flush=True)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _write_history(history: list[dict[str, float]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        keys = sorted({k for row in history for k in row})
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(history)
    else:
        path.write_text(json.dumps(history, indent=1))


def _check_finite(loss: Tensor, epoch: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}")


def train_epoch(
    loss_fn: Callable[[Tensor, Tensor, Tensor], dict[str, Tensor]],
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[Tensor, Tensor, Tensor]],
    num_batches: int,
    epoch: int,
    device: torch.device,
    bar: tqdm | None = None,
    replicas: Replicas | None = None,
) -> dict[str, float]:
    """One pass of Adam steps on ``loss_fn(users, pos, neg)['loss']`` over ``batches``.

    Returns the mean over the steps of every loss term of the (global) batch. On an
    accelerator, reading a loss value waits for the device: the running loss is checked
    (and shown) every ``DEVICE_SYNC_EVERY`` steps instead of after each one.

    With several processes (``replicas``), every process receives the same global
    batches and trains on its share of each (:meth:`Replicas.share`); its loss is scaled
    by ``share * world_size`` so that the gradients averaged by DDP are those of the mean
    over the global batch, and the logged terms are summed over the processes. A NaN is
    then only detected at the end of the epoch, on the summed terms, so that every
    process raises together instead of one leaving the others waiting.
    """
    replicas = replicas if replicas is not None else Replicas()
    if replicas.is_distributed:
        check_every = 0  # no per-step check (see above)
    else:
        check_every = 1 if device.type == "cpu" else DEVICE_SYNC_EVERY
    show_every = check_every or DEVICE_SYNC_EVERY
    sums: dict[str, Tensor] = {}
    steps = 0
    for users, pos, neg in batches:
        if steps >= num_batches:
            break
        rows, share = replicas.share(users.numel())
        users, pos, neg = users[rows].to(device), pos[rows].to(device), neg[rows].to(device)
        with value_checks(check_every == 1):  # no per-loss host syncs on accelerators
            terms = loss_fn(users, pos, neg)
        loss = terms["loss"]
        if check_every and steps % check_every == 0:
            _check_finite(loss, epoch)
        weight = share * replicas.world_size
        optimizer.zero_grad(set_to_none=True)
        (loss if weight == 1.0 else loss * weight).backward()
        optimizer.step()
        for key, value in terms.items():
            value = value.detach() if share == 1.0 else value.detach() * share
            sums[key] = sums[key] + value if key in sums else value.clone()
        steps += 1
        if bar is not None:
            if steps % show_every == 0:
                running = float(sums["loss"]) * replicas.world_size / steps
                bar.set_postfix(loss=f"{running:.4f}")
            bar.update()
    if replicas.is_distributed and sums:
        keys = sorted(sums)
        total = replicas.all_reduce_sum(torch.stack([sums[k].float() for k in keys]))
        sums = dict(zip(keys, total.unbind()))
    if steps:
        _check_finite(sums["loss"], epoch)
    return {key: float(value) / max(steps, 1) for key, value in sums.items()}


def _check_arguments(
    data: HeteroData,
    epochs: int,
    batch_size: int,
    patience: int,
    monitor: str,
    ks: Sequence[int],
    resume: bool,
    checkpoint_path: str | Path | None,
) -> None:
    check_count(epochs, "epochs")
    check_count(batch_size, "batch_size")
    check_count(patience, "patience", minimum=0)
    name, _, cut = monitor.partition("@")
    if name not in METRIC_NAMES or not cut.isdigit():
        raise ValueError(f"monitor must look like 'recall@20', got {monitor!r}")
    if int(cut) not in ks:
        raise ValueError(f"monitor {monitor!r} uses a cut-off that is not in ks={tuple(ks)}")
    num_items = data["item"].num_nodes
    if max(ks) > num_items:
        raise ValueError(
            f"the data set has {num_items} items, fewer than the metric cut-off {max(ks)} in "
            f"ks={tuple(ks)}: pass smaller ks (and monitor), e.g. ks=({min(num_items, 10)},)"
        )
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")


def train(
    model: Recommender,
    data: HeteroData,
    *,
    epochs: int = 1000,
    batch_size: int = 2048,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    lr_decay: Callable[[int], float] | None = None,
    patience: int = 20,
    monitor: str = "recall@20",
    ks: Sequence[int] = (10, 20),
    eval_batch_size: int = 1024,
    mask_valid_at_test: bool = False,
    seed: int = 0,
    device: str | torch.device | None = None,
    history_path: str | Path | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    max_train_batches: int | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    evaluate_test: bool = True,
    negative_items: Tensor | None = None,
    pair_sampling: str = "edges",
) -> TrainResult:
    r"""Trains ``model`` with Adam on BPR triples and early stopping on validation.

    Each epoch draws one shuffled pass over the training interactions with one uniform
    negative per positive (:class:`~pyg_multirec.sampling.BPRSampler`, seeded by
    ``seed`` and the epoch so runs are reproducible and resumable), steps Adam on
    ``model.loss(...)['loss']``, then ranks all items for every validation user
    (:func:`~pyg_multirec.evaluation.evaluate`, training items masked). Training stops
    when ``monitor`` has not improved for ``patience`` epochs; the best parameters are
    restored and evaluated on the test split (MMRec protocol).

    Args:
        model: a :class:`~pyg_multirec.models.Recommender`.
        data: the dataset's :class:`HeteroData` (see ``docs/design.md``).
        epochs: maximum number of epochs.
        batch_size: training triples per step.
        lr, weight_decay: Adam settings (``model.auxiliary_parameters()`` are excluded).
        lr_decay: optional ``epoch -> factor`` multiplier of ``lr`` (``LambdaLR``).
        patience: epochs without improvement before stopping (``0`` disables it).
        monitor: validation metric used for model selection.
        ks: cut-offs of the reported metrics (each at most the number of items).
        eval_batch_size: users per full-ranking batch.
        mask_valid_at_test: also mask validation items when testing.
        seed: seeds Python, NumPy, PyTorch and the sampler.
        device: ``'cpu'`` (default) or ``'cuda'``.
        history_path: where to write the per-epoch history (``.json`` or ``.csv``).
        checkpoint_path: where to save the full training state after every epoch.
        resume: continue from ``checkpoint_path`` if it exists.
        progress: report progress: on a terminal, a tqdm bar per epoch; otherwise (a log
            file, CI) one plain line per epoch (epoch, loss, valid metric, best, seconds).
        max_train_batches: cap on batches per epoch (smoke tests).
        on_epoch_end: called as ``on_epoch_end(epoch, valid_metrics)`` after each epoch's
            validation (and after its history and checkpoint are written); an exception
            raised in it (e.g. ``optuna.TrialPruned``) propagates out of :func:`train`.
        evaluate_test: evaluate the restored best model on the test split; when ``False``
            the test split is never read and :attr:`TrainResult.test` is ``{}``.
        negative_items: a 1-D integer tensor of item ids: BPR negatives are then drawn
            uniformly among these items only (see :class:`~pyg_multirec.sampling.BPRSampler`).
        pair_sampling: ``'edges'`` (each epoch a shuffled pass over the training pairs) or
            ``'users'`` (uniform users, then a uniform pair of each: MICRO's official
            sampler); see :class:`~pyg_multirec.sampling.BPRSampler`'s ``pairs``.

    A model that keeps state outside its parameters and buffers (e.g. the optimizer of
    an auxiliary estimator) stores it through ``get_extra_state``/``set_extra_state`` so
    that checkpoints resume exactly.

    Started by ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1), the processes train
    one model together (:mod:`pyg_multirec.distributed`, ``docs/distributed.md``):
    ``batch_size`` is the global batch (a multiple of ``N``), gradients are averaged by
    ``DistributedDataParallel``, rank 0 validates, logs, writes ``history_path`` and
    ``checkpoint_path`` and calls ``on_epoch_end``, and every process returns the same
    :class:`TrainResult`.
    """
    _check_arguments(data, epochs, batch_size, patience, monitor, ks, resume, checkpoint_path)
    num_users, num_items = data["user"].num_nodes, data["item"].num_nodes
    if pair_sampling not in PAIR_SAMPLING:
        raise ValueError(f"'pair_sampling' must be one of {PAIR_SAMPLING} (got {pair_sampling!r})")
    if negative_items is not None:
        negative_items = check_item_ids(negative_items, num_items, "negative_items")
    distributed.from_environment().check_batch_size(batch_size)  # before joining a group
    replicas, device = distributed.setup(resolve_device(device))
    seed_everything(seed + replicas.rank)  # rank 0 seeds as a single process does
    model = model.to(device)
    optimizer, scheduler = _optimizer(model, lr, weight_decay, lr_decay)
    run = _Run(
        model,
        data.to(device),
        device,
        replicas,
        optimizer,
        scheduler,
        EarlyStopping(monitor, patience),
        ks,
        eval_batch_size,
        Path(history_path) if history_path is not None else None,
        Path(checkpoint_path) if checkpoint_path is not None else None,
        _Log(progress and replicas.is_main),
        on_epoch_end,
    )
    if resume:
        run.resume()
    sampler = BPRSampler(
        data[TRAIN_EDGE].edge_index.cpu(),
        num_users,
        num_items,
        batch_size,
        seed=seed * EPOCH_SEED_STRIDE,
        negative_items=negative_items,
        pairs=pair_sampling,
    )
    num_batches = len(sampler)
    if max_train_batches is not None:
        num_batches = min(num_batches, max_train_batches)
    stopped_early = False
    for epoch in range(run.next_epoch, epochs + 1):
        if run.stopper.should_stop:
            stopped_early = True
            break
        run.epoch(epoch, sampler, num_batches)
    test = run.restore_best_and_test(evaluate_test, mask_valid_at_test)
    history = run.history
    return TrainResult(
        best_epoch=run.stopper.best_epoch,
        best_valid=run.stopper.best_valid,
        test=test,
        history=history,
        seconds_per_epoch=float(np.mean([r["seconds"] for r in history])) if history else 0.0,
        stopped_early=stopped_early,
    )


class _Run:
    """The objects of one :func:`train` call and its per-epoch steps."""

    def __init__(
        self,
        model: Recommender,
        data: HeteroData,
        device: torch.device,
        replicas: Replicas,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        stopper: EarlyStopping,
        ks: Sequence[int],
        eval_batch_size: int,
        history_path: Path | None,
        checkpoint_path: Path | None,
        log: _Log,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None,
    ) -> None:
        self.model, self.data, self.device, self.replicas = model, data, device, replicas
        self.optimizer, self.scheduler, self.stopper = optimizer, scheduler, stopper
        self.ks, self.eval_batch_size = ks, eval_batch_size
        self.history_path, self.checkpoint_path = history_path, checkpoint_path
        self.log, self.on_epoch_end = log, on_epoch_end
        self.step = distributed.wrap_for_data_parallel(model, replicas, device)
        self.history: list[dict[str, float]] = []
        stopper.best_state = state_to_cpu(model)
        # Everything a checkpoint saves and restores, by name.
        self.components = {
            "model": model,
            "optimizer": optimizer,
            "scheduler": scheduler,
            "stopping": stopper,
        }

    @property
    def next_epoch(self) -> int:
        return len(self.history) + 1  # one history row per finished epoch

    def resume(self) -> None:
        """Continues from the checkpoint, if it exists (every process reads it)."""
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            state = TrainingState.load(self.checkpoint_path)
            state.restore(self.components, rank=self.replicas.rank)
            self.history = state.history
            if self.history_path is not None and self.replicas.is_main:
                _write_history(self.history, self.history_path)  # complete if no epoch runs

    def epoch(self, epoch: int, sampler: BPRSampler, num_batches: int) -> None:
        """Trains one epoch, then rank 0 validates, logs and saves; the others follow."""
        model, replicas = self.model, self.replicas
        model.train()
        model.on_epoch_start(epoch)
        distributed.check_in_step(model, replicas, self.device, f"epoch {epoch}")
        sampler.set_epoch(epoch)  # negatives of epoch e depend only on (seed, e): resumable
        bar = self.log.bar(num_batches, epoch)
        tic = time.perf_counter()
        with distributed.replicated_step(replicas):
            losses = train_epoch(
                self.step, self.optimizer, sampler, num_batches, epoch, self.device, bar, replicas
            )
        bar.close()
        if self.scheduler is not None:
            self.scheduler.step()
        seconds = time.perf_counter() - tic
        distributed.average_running_statistics(model, replicas)
        rngs = replicas.gather(rng_state()) if self.checkpoint_path is not None else None
        valid, main_seconds = replicas.on_main(
            lambda: self._validate_on_main(epoch, seconds, losses, rngs)
        )
        if not replicas.is_main:  # the same record as rank 0's
            self._record(epoch, main_seconds, losses, valid)

    def _validate_on_main(
        self,
        epoch: int,
        seconds: float,
        losses: dict[str, float],
        rngs: list[dict[str, Any]] | None,
    ) -> tuple[dict[str, float], float]:
        valid = evaluate(
            self.model, self.data, "valid", ks=self.ks, batch_size=self.eval_batch_size
        )
        row = self._record(epoch, seconds, losses, valid)
        self.log.epoch(row, self.stopper)
        if self.history_path is not None:
            _write_history(self.history, self.history_path)
        if self.checkpoint_path is not None:
            state = TrainingState.capture(epoch, self.history, self.components, rngs)
            state.save(self.checkpoint_path)
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch, dict(valid))
        return valid, seconds

    def _record(
        self, epoch: int, seconds: float, losses: dict[str, float], valid: dict[str, float]
    ) -> dict[str, float]:
        """Updates early stopping and appends (and returns) the epoch's history row."""
        self.stopper.update(epoch, valid, self.model)
        row: dict[str, float] = {"epoch": epoch, "seconds": seconds}
        row.update({f"train_{k}": v for k, v in losses.items()})
        row.update({f"valid_{k}": v for k, v in valid.items() if k != "num_rows"})
        self.history.append(row)
        return row

    def restore_best_and_test(self, evaluate_test: bool, mask_valid: bool) -> dict[str, float]:
        """Loads the best parameters; rank 0 evaluates them on the test split if asked."""
        self.model.load_state_dict(copy.deepcopy(self.stopper.best_state))
        # lets models rebuild caches from the restored state
        self.model.on_epoch_start(self.stopper.best_epoch)
        if not evaluate_test:
            return {}
        return self.replicas.on_main(
            lambda: evaluate(
                self.model,
                self.data,
                "test",
                ks=self.ks,
                batch_size=self.eval_batch_size,
                mask_valid=mask_valid,
            )
        )


def _optimizer(
    model: Recommender,
    lr: float,
    weight_decay: float,
    lr_decay: Callable[[int], float] | None,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """Adam over the trainable parameters but ``model.auxiliary_parameters()``."""
    optimizer = torch.optim.Adam(model.main_parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.LambdaLR(optimizer, lr_decay) if lr_decay is not None else None
    )
    return optimizer, scheduler
