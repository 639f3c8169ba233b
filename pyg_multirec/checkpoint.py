"""The state of a training run after an epoch, saved and loaded as one object."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

#: Bumped whenever the saved fields change; older files raise a clear error.
CHECKPOINT_VERSION = 2


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def rng_state() -> dict[str, Any]:
    """The states of the Python, NumPy and PyTorch (CPU and CUDA) generators."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores generators saved by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available() and state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainingState:
    """Everything a run needs to continue after :attr:`epoch`, saved and loaded as a whole.

    The live objects of a run (model, optimizer, scheduler, early stopping) are named in
    one dictionary of objects with ``state_dict()``/``load_state_dict()``;
    :meth:`capture` reads them all and :meth:`restore` writes them all back, so adding a
    component to a run means adding it to that dictionary, nothing else.

    Attributes:
        epoch: the last finished epoch (1-based).
        history: one dictionary per finished epoch (losses, validation metrics, seconds).
        states: ``state_dict()`` of each named component.
        rng: the random generator states (:func:`rng_state`) of each process, by rank.
    """

    epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    rng: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def capture(
        cls,
        epoch: int,
        history: list[dict[str, float]],
        components: dict[str, Stateful | None],
        rng: list[dict[str, Any]] | None = None,
    ) -> TrainingState:
        """Reads the state of every component (``None`` entries are skipped)."""
        states = {name: c.state_dict() for name, c in components.items() if c is not None}
        return cls(epoch, list(history), states, rng if rng is not None else [rng_state()])

    def restore(self, components: dict[str, Stateful | None], rank: int = 0) -> None:
        """Loads every component and the generators of process :obj:`rank` (when saved)."""
        for name, component in components.items():
            if component is None:
                continue
            if name not in self.states:
                raise ValueError(
                    f"the checkpoint has no state for {name!r} (it holds {sorted(self.states)})"
                )
            component.load_state_dict(self.states[name])
        if rank < len(self.rng):
            set_rng_state(self.rng[rank])

    def save(self, path: str | Path) -> None:
        """Writes the state atomically (a crash mid-write leaves the previous file; two
        processes saving to one path each write a temporary file of their own)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(
            {
                "version": CHECKPOINT_VERSION,
                **{f.name: getattr(self, f.name) for f in fields(self)},
            },
            tmp,
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> TrainingState:
        """Reads a file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        raw = torch.load(path, map_location=map_location, weights_only=False)
        version = raw.get("version") if isinstance(raw, dict) else None
        if version != CHECKPOINT_VERSION:
            raise ValueError(
                f"{path} is not a training checkpoint of version {CHECKPOINT_VERSION} (found "
                f"version {version!r}); it was written by another pyg_multirec version: "
                f"train again without resume"
            )
        missing = [f.name for f in fields(cls) if f.name not in raw]
        if missing:
            raise ValueError(f"{path} lacks the checkpoint fields {missing}")
        return cls(**{f.name: raw[f.name] for f in fields(cls)})
