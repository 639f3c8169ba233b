"""Training loop: Adam on BPR batches, full-ranking validation, early stopping."""

from __future__ import annotations

import copy
import csv
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from pyg_multirec.evaluation import evaluate
from pyg_multirec.losses import value_checks
from pyg_multirec.models import Recommender
from pyg_multirec.sampling import BPRSampler

TRAIN_EDGE = ("user", "train", "item")
#: Multiplier separating the per-epoch sampler seeds of different run seeds.
EPOCH_SEED_STRIDE = 1_000_003
CHECKPOINT_VERSION = 1
# On an accelerator, the loss is read back (finite check, progress bar) every this many steps.
DEVICE_SYNC_EVERY = 20


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        best_epoch: the epoch (1-based) with the best validation metric.
        best_valid: validation metrics at that epoch.
        test: test metrics of the restored best model (``{}`` when ``evaluate_test=False``).
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


def _state_to_cpu(model: torch.nn.Module) -> dict[str, Any]:
    # Tensors are copied to the CPU; extra state (any object, see ``get_extra_state``) is
    # deep-copied so later training steps cannot change the kept best state.
    return {
        k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else copy.deepcopy(v)
        for k, v in model.state_dict().items()
    }


def _check_finite(loss: Tensor, epoch: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}")


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
        ks: cut-offs of the reported metrics.
        eval_batch_size: users per full-ranking batch.
        mask_valid_at_test: also mask validation items when testing.
        seed: seeds Python, NumPy, PyTorch and the sampler.
        device: ``'cpu'`` (default) or ``'cuda'``.
        history_path: where to write the per-epoch history (``.json`` or ``.csv``).
        checkpoint_path: where to save the full training state after every epoch.
        resume: continue from ``checkpoint_path`` if it exists.
        progress: show a tqdm progress bar with the running loss.
        max_train_batches: cap on batches per epoch (smoke tests).
        on_epoch_end: ``(epoch, valid_metrics) -> None``, called after each epoch's
            validation (and after the history and checkpoint of that epoch are written);
            an exception raised in it propagates, e.g. ``optuna.TrialPruned`` to prune a
            hyper-parameter search trial.
        evaluate_test: evaluate the restored best model on the test split. ``False``
            never touches the test split (model selection) and returns ``test == {}``.

    A model that keeps state outside its parameters and buffers (e.g. the optimizer of
    an auxiliary estimator) stores it through ``get_extra_state``/``set_extra_state`` so
    that checkpoints resume exactly.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if patience < 0:
        raise ValueError(f"patience must be >= 0, got {patience}")
    if monitor.split("@")[0] not in {"recall", "ndcg", "precision", "map", "hit"}:
        raise ValueError(f"monitor must look like 'recall@20', got {monitor!r}")
    if int(monitor.split("@")[1]) not in ks:
        raise ValueError(f"monitor {monitor!r} uses a cut-off that is not in ks={tuple(ks)}")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")

    device = resolve_device(device)
    seed_everything(seed)
    model = model.to(device)
    data = data.to(device)

    aux = {id(p) for p in model.auxiliary_parameters()}
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in aux]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.LambdaLR(optimizer, lr_decay) if lr_decay is not None else None
    )

    train_edges = data[TRAIN_EDGE].edge_index.cpu()
    num_users, num_items = data["user"].num_nodes, data["item"].num_nodes

    history: list[dict[str, float]] = []
    best_value, best_epoch, best_state = -math.inf, 0, _state_to_cpu(model)
    best_valid: dict[str, float] = {}
    start_epoch, bad_epochs, stopped_early = 1, 0, False
    train_seconds: list[float] = []

    ckpt_path = Path(checkpoint_path) if checkpoint_path is not None else None
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{ckpt_path} is not a training checkpoint of this version")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        history, best_value, best_epoch = state["history"], state["best_value"], state["best_epoch"]
        best_state, best_valid, bad_epochs = state["best_state"], state["best_valid"], state["bad"]
        train_seconds = state["train_seconds"]
        start_epoch = state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        np.random.set_state(state["numpy_rng"])
        if torch.cuda.is_available() and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    sampler = BPRSampler(
        train_edges, num_users, num_items, batch_size, seed=seed * EPOCH_SEED_STRIDE
    )
    for epoch in range(start_epoch, epochs + 1):
        if patience and bad_epochs >= patience:
            stopped_early = True
            break
        model.train()
        model.on_epoch_start(epoch)
        sampler.set_epoch(epoch)  # negatives of epoch e depend only on (seed, e): resumable
        total = len(sampler) if max_train_batches is None else min(len(sampler), max_train_batches)
        bar = tqdm(total=total, desc=f"epoch {epoch}", disable=not progress, leave=False)
        sums: dict[str, Tensor] = {}
        steps = 0
        # On an accelerator, reading a loss value waits for the device: check (and show)
        # the running loss every few steps instead of after each one.
        check_every = 1 if device.type == "cpu" else DEVICE_SYNC_EVERY
        tic = time.perf_counter()
        for users, pos, neg in sampler:
            if steps >= total:
                break
            users, pos, neg = users.to(device), pos.to(device), neg.to(device)
            with value_checks(check_every == 1):  # no per-loss host syncs on accelerators
                terms = model.loss(users, pos, neg)
            loss = terms["loss"]
            if steps % check_every == 0:
                _check_finite(loss, epoch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for key, value in terms.items():
                value = value.detach()
                sums[key] = sums[key] + value if key in sums else value.clone()
            steps += 1
            if steps % check_every == 0:
                bar.set_postfix(loss=f"{float(sums['loss']) / steps:.4f}")
            bar.update()
        bar.close()
        if steps:
            _check_finite(sums["loss"], epoch)
        if scheduler is not None:
            scheduler.step()
        seconds = time.perf_counter() - tic
        train_seconds.append(seconds)

        valid = evaluate(model, data, "valid", ks=ks, batch_size=eval_batch_size)
        row = {"epoch": epoch, "seconds": seconds}
        row.update({f"train_{k}": float(v) / max(steps, 1) for k, v in sums.items()})
        row.update({f"valid_{k}": v for k, v in valid.items() if k != "num_rows"})
        history.append(row)
        if valid[monitor] > best_value:
            best_value, best_epoch, best_valid = valid[monitor], epoch, valid
            best_state, bad_epochs = _state_to_cpu(model), 0
        else:
            bad_epochs += 1
        if progress:
            tqdm.write(
                f"epoch {epoch:4d}  loss {row.get('train_loss', float('nan')):.4f}  "
                f"valid {monitor} {valid[monitor]:.4f}  best {best_value:.4f} (epoch {best_epoch})"
                f"  {seconds:.2f}s"
            )
        if history_path is not None:
            _write_history(history, Path(history_path))
        if ckpt_path is not None:
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "version": CHECKPOINT_VERSION,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "history": history,
                    "best_value": best_value,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "best_valid": best_valid,
                    "bad": bad_epochs,
                    "train_seconds": train_seconds,
                    "torch_rng": torch.get_rng_state(),
                    "python_rng": random.getstate(),
                    "numpy_rng": np.random.get_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all()
                    if torch.cuda.is_available()
                    else None,
                },
                ckpt_path,
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, valid)

    model.load_state_dict(copy.deepcopy(best_state))
    model.on_epoch_start(best_epoch)  # lets models rebuild caches from the restored parameters
    test = (
        evaluate(
            model, data, "test", ks=ks, batch_size=eval_batch_size, mask_valid=mask_valid_at_test
        )
        if evaluate_test
        else {}
    )
    return TrainResult(
        best_epoch=best_epoch,
        best_valid=best_valid,
        test=test,
        history=history,
        seconds_per_epoch=float(np.mean(train_seconds)) if train_seconds else 0.0,
        stopped_early=stopped_early,
    )
