"""Hyper-parameter search on the validation split: the ``tune`` sub-command of every example.

An example declares its search space beside its flags and hands it to
:func:`~pyg_multirec.experiment.run_example`::

    SEARCH_SPACE = {"reg_weight": [1e-2, 1e-3, 1e-4], "lr": "1e-4:1e-2:log"}
    run_example("mf", build, add_arguments, search_space=SEARCH_SPACE)

and a user searches, overrides the space and re-trains the winner for several seeds with::

    python examples/mf.py tune --dataset ml100k --jobs 2 --seeds 0,1,2
    python examples/mf.py tune --space reg_weight=1e-3,1e-2 --space lr=1e-4:1e-2:log

Keys are the flags' destinations (``reg_weight`` for ``--reg-weight``). A list of values is
searched exhaustively with Optuna's ``GridSampler`` when every entry of the space is a list;
``"LOW:HIGH"`` (uniform) or ``"LOW:HIGH:log"`` (log-uniform) ranges are sampled with TPE (the
lists then become categorical choices). Every trial trains with the shared loop on the
training split, is scored by its best **valid** Recall@20 (early stopping as in ``train``),
reports that metric after each epoch to a ``MedianPruner``, and never evaluates the test
split; only the seeds re-trained from the best configuration (``--seeds``) read the test
split, once each, at their best valid epoch.

The pruner saves time where bad configurations fall behind early and stay behind. Where
the valid curves cross late it stops configurations that could have won (on ml100k it
stopped MF and VBPR trials that were ahead of the eventual winner at that epoch, and
LightGCN's 2-4 layer trials at epoch 10 while the finished reference trials all had 1
layer; MICRO's best grid point was below the median at epoch 10); ``--no-prune`` runs
every trial to its own early stop, and a ``--no-prune`` command also runs again, in full,
the trials that an earlier command pruned (their rows then say ``superseded``).

The first trial of a TPE search is the command's own configuration (the example's defaults,
or the values given on the command line), where it lies in the space.

Where a model's result depends much on its seed (early stopping in a plateau, say), a single
seed's validation score picks configurations that were lucky once.
``--search-seeds 0,1,2`` trains every trial once per seed and scores it by the **mean** of
their best valid Recall@20 (still the validation split only); the pruner watches the first
seed's curve, and the later seeds run only for trials that survive it.

Scoring every trial over several seeds multiplies the search's cost. ``--confirm-top 3
--confirm-seeds 1,2`` is the cheaper cure for the winner's curse of a search over a flat
validation surface: the search runs as usual, then only its 3 best finished trials are trained
again with seeds 1 and 2 (validation only), and the best configuration is the one with the
highest mean best valid Recall@20 over all its runs. Their scores are kept in
``OUT/confirm.json`` (a stopped confirmation resumes) and in ``best.json``.

Trials live in ``OUT/study.db`` (SQLite), so a search that is killed resumes where it
stopped when the same command is run again: finished trials are kept, and the trials that
were running are marked failed (``interrupted``) and run again; the samplers of a resumed
command are seeded with the study's trial count as well, so that TPE does not draw again
the points of the command before it. ``--jobs N`` runs trials in
``N`` worker processes sharing that database. Outputs: ``OUT/trials.csv`` and
``OUT/trials.md`` (every trial with its parameters, valid metric, best epoch and seconds),
``OUT/best.json`` and, with ``--seeds``, ``OUT/seeds/sSEED/`` (the ``train`` outputs) and
the test mean ± std in ``best.json``.

A killed search loses no finished epoch either: every search, confirmation and seed run
saves its training state after each epoch (``OUT/run_states/KEY.pt`` for search and
confirmation runs, ``KEY`` naming the configuration and seed; ``OUT/seeds/sSEED/last.pt``
for the seed runs) and, run again, continues from it exactly (same model, optimizer, early
stopping and random generators). A pruned or failed run's state is removed; a finished
run's is kept while it may serve again: the seed runs of the best configuration take over
the finished runs of the same configuration and seed (its search trial, its confirmation
runs), so that these are not trained twice, and read the test split of their best epoch.

Optuna is an optional dependency: ``pip install pyg_multirec[tune]``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import importlib.util
import inspect
import itertools
import json
import math
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from pyg_multirec.train import TrainResult, seed_everything

#: The validation metric that trials maximise and the pruner watches, every epoch.
MONITOR = "recall@20"
STUDY_NAME = "tune"
DB_FILE = "study.db"
LOCK_FILE = ".tune.lock"
#: Serialises the workers' claims of queued trials (see :func:`_storage`).
CLAIM_LOCK_FILE = ".claim.lock"
BEST_FILE = "best.json"
TRIALS_CSV = "trials.csv"
TRIALS_MD = "trials.md"
SEEDS_DIR = "seeds"
CONFIRM_FILE = "confirm.json"
#: Where search and confirmation runs keep their training state until they end.
RUN_STATES_DIR = "run_states"
#: Records what a seed folder trains, so that only the same run continues its last.pt.
SEED_SETTINGS_FILE = "settings.json"
#: Hex digits of the hash that names a run's state file.
RUN_KEY_DIGITS = 16
DEFAULT_TPE_TRIALS = 30
DEFAULT_PRUNE_WARMUP = 10  # epochs a trial runs before it may be pruned
DEFAULT_PRUNE_STARTUP = 5  # trials that must finish before pruning starts
SQLITE_TIMEOUT_S = 60  # parallel workers wait this long for the database lock
INTERRUPTED = "interrupted"
#: The state shown for a trial that an earlier command pruned and a ``--no-prune`` command
#: ran again in full (as a new trial).
SUPERSEDED = "superseded"
#: The state shown for a finished trial whose parameters an earlier finished trial had (a
#: resumed TPE search could draw a point again; the selection counts each point once).
REPEATED = "repeated"
#: Separates the sampler seeds of the worker processes of different search seeds.
WORKER_SEED_STRIDE = 1000
#: Flags that say where or how a run happens, not what is trained: never compared between a
#: study and a resumed command, never searched.
RUN_ONLY = frozenset(
    {"command", "out", "resume", "quiet", "plots", "device", "data_root", "eval_batch_size"}
)
#: Flags that fix the data or the budget: part of the study, never searched.
NOT_SEARCHABLE = RUN_ONLY | {
    "dataset",
    "cold_start",
    "synthetic_users",
    "synthetic_items",
    "synthetic_interactions",
    "seed",
    "epochs",
    "patience",
    "mask_valid",
    "max_batches",
}
#: The ``tune`` sub-command's own flags (not training settings).
TUNE_ONLY = frozenset(
    {
        "space",
        "trials",
        "jobs",
        "seeds",
        "search_seeds",
        "no_prune",
        "retry_failed",
        "prune_warmup",
        "prune_startup",
        "skip_search",
        "confirm_top",
        "confirm_seeds",
    }
)

SpaceSpec = Union[Sequence[Any], str, "Range"]
BuildModel = Callable[..., Any]


@dataclass(frozen=True)
class Range:
    """A continuous (or integer) range, uniform or log-uniform, sampled by TPE."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log, "int": self.integer}


def _import_optuna():
    try:
        import optuna
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'tune' sub-command needs optuna: pip install 'pyg_multirec[tune]' "
            "(or pip install optuna)"
        ) from err
    return optuna


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``tune`` sub-command's own flags to ``parser``."""
    group = parser.add_argument_group("search (tune)")
    group.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="override or add a searched parameter: a list 'reg_weight=1e-3,1e-2' (grid) or "
        "a range 'lr=1e-4:1e-2' / 'lr=1e-4:1e-2:log' (TPE); repeatable",
    )
    group.add_argument(
        "--trials",
        type=int,
        default=None,
        help=f"number of trials (default: the whole grid, or {DEFAULT_TPE_TRIALS} with ranges)",
    )
    group.add_argument("--jobs", type=int, default=1, help="trials run in parallel processes")
    group.add_argument(
        "--seeds",
        default=None,
        help="re-train the best configuration for these seeds (e.g. 0,1,2) and report the "
        "test mean ± std",
    )
    group.add_argument(
        "--search-seeds",
        default=None,
        help="train every trial once per seed (e.g. 0,1,2) and select on the mean of their "
        "best valid Recall@20 (default: one run with --seed)",
    )
    group.add_argument("--no-prune", action="store_true", help="never prune a trial")
    group.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again the trials that an error failed in an earlier command (a missing "
        "data folder, out of memory; interrupted trials are run again anyway)",
    )
    group.add_argument(
        "--prune-warmup",
        type=int,
        default=DEFAULT_PRUNE_WARMUP,
        help="epochs a trial runs before the median pruner may stop it",
    )
    group.add_argument(
        "--prune-startup",
        type=int,
        default=DEFAULT_PRUNE_STARTUP,
        help="finished trials before the median pruner starts pruning",
    )
    group.add_argument(
        "--confirm-top",
        type=int,
        default=0,
        metavar="N",
        help="after the search, train its N best finished trials again with --confirm-seeds "
        "(validation only) and select on the mean over all their runs",
    )
    group.add_argument(
        "--confirm-seeds",
        default=None,
        help="the seeds of --confirm-top (e.g. 1,2; not a search seed)",
    )
    group.add_argument(
        "--skip-search",
        action="store_true",
        help="run no new trial: use the finished search in OUT (e.g. only re-train --seeds)",
    )


# ---- the search space --------------------------------------------------------------------


def searchable_flags(
    add_arguments: Callable[[argparse.ArgumentParser], None] | None,
) -> dict[str, argparse.Action]:
    """The flags a search may vary, by destination: the shared training flags and the
    model's own (those in :data:`NOT_SEARCHABLE` excluded)."""
    from pyg_multirec.experiment import _add_data_arguments, _add_train_arguments

    parser = argparse.ArgumentParser(add_help=False)
    _add_data_arguments(parser)
    _add_train_arguments(parser)
    if add_arguments is not None:
        add_arguments(parser)
    return {
        a.dest: a
        for a in parser._actions
        if a.dest not in NOT_SEARCHABLE and a.option_strings and a.dest != "help"
    }


def _convert(name: str, value: Any, action: argparse.Action) -> Any:
    """One value of ``name`` as the flag would parse it, checked against its choices."""
    is_switch = action.nargs == 0  # store_true / store_false
    try:
        if is_switch:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                value = value.lower() in ("true", "1")
            value = bool(value)
        elif action.type is not None:
            value = action.type(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        kind = "true/false" if is_switch else getattr(action.type, "__name__", "")
        raise ValueError(
            f"search space: {value!r} is not a valid {kind} value for {name!r}"
        ) from None
    if action.choices is not None and value not in action.choices:
        raise ValueError(
            f"search space: {value!r} is not an allowed value of {name!r} "
            f"(choices: {', '.join(map(str, action.choices))})"
        )
    return value


def _parse_range(name: str, text: str, action: argparse.Action) -> Range:
    parts = text.split(":")
    log = len(parts) == 3 and parts[2].strip().lower() == "log"
    if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
        raise ValueError(
            f"search space: {name}={text} is not a range; write LOW:HIGH or LOW:HIGH:log"
        )
    if action.choices is not None or action.type not in (int, float):
        allowed = f"; choices: {', '.join(map(str, action.choices))}" if action.choices else ""
        raise ValueError(
            f"search space: {name!r} takes a list of values, not a range (it is not a "
            f"numeric flag{allowed})"
        )
    try:
        low, high = (action.type(p.strip()) for p in parts[:2])
    except ValueError:
        raise ValueError(
            f"search space: {name}={text}: the bounds must be {action.type.__name__} numbers"
        ) from None
    if not low < high:
        raise ValueError(f"search space: {name}={text} is an empty range (LOW must be < HIGH)")
    if log and low <= 0:
        raise ValueError(f"search space: {name}={text}: a log range needs LOW > 0")
    return Range(low, high, log=log, integer=action.type is int)


def parse_spec(name: str, spec: SpaceSpec, action: argparse.Action) -> list[Any] | Range:
    """A list of values (converted with the flag's type, checked against its choices) or a
    :class:`Range`, from a ``SEARCH_SPACE`` entry or the text of ``--space NAME=SPEC``."""
    if isinstance(spec, Range):
        return _parse_range(name, f"{spec.low}:{spec.high}" + (":log" if spec.log else ""), action)
    if isinstance(spec, str):
        if ":" in spec:
            return _parse_range(name, spec, action)
        spec = [s.strip() for s in spec.split(",")]
    values = list(spec)
    if not values or any(v == "" for v in values):
        raise ValueError(f"search space: {name!r} has an empty value list")
    return list(dict.fromkeys(_convert(name, v, action) for v in values))


def resolve_space(
    defaults: Mapping[str, SpaceSpec] | None,
    overrides: Sequence[str],
    flags: Mapping[str, argparse.Action],
) -> dict[str, list[Any] | Range]:
    """The example's space with the ``--space NAME=SPEC`` overrides applied (an override
    replaces or adds one parameter); every name and value is checked."""
    specs: dict[str, SpaceSpec] = dict(defaults or {})
    for text in overrides:
        name, sep, spec = text.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--space {text!r}: write NAME=VALUES or NAME=LOW:HIGH[:log]")
        specs[name.strip().replace("-", "_")] = spec.strip()
    space: dict[str, list[Any] | Range] = {}
    for name, spec in specs.items():
        key = name.replace("-", "_")
        if key not in flags:
            why = (
                "it fixes the data, the budget or the run and cannot be searched"
                if key in NOT_SEARCHABLE
                else "unknown parameter"
            )
            raise ValueError(
                f"search space: {name!r}: {why}; searchable: {', '.join(sorted(flags))}"
            )
        space[key] = parse_spec(key, spec, flags[key])
    if not space:
        raise ValueError("the search space is empty: give --space NAME=VALUES")
    return space


def space_to_json(space: Mapping[str, list[Any] | Range]) -> dict[str, Any]:
    return {k: v.to_json() if isinstance(v, Range) else list(v) for k, v in space.items()}


def is_grid(space: Mapping[str, list[Any] | Range]) -> bool:
    return all(not isinstance(v, Range) for v in space.values())


def grid_size(space: Mapping[str, list[Any] | Range]) -> int:
    return math.prod(len(v) for v in space.values())  # type: ignore[arg-type]


# ---- trials ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ScriptFunction:
    """A module-level function named by its file, for worker processes.

    Spawned workers unpickle functions by module name; an example script loaded by path
    (as the tests do) has a name no fresh process can import, so it is loaded again from
    its file there.
    """

    path: str
    name: str

    def __call__(self, *args: Any) -> Any:
        module = _SCRIPTS.get(self.path)
        if module is None:
            spec = importlib.util.spec_from_file_location(f"_tuned_{len(_SCRIPTS)}", self.path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _SCRIPTS[self.path] = module
        return getattr(module, self.name)(*args)


_SCRIPTS: dict[str, Any] = {}


def _portable(fn: BuildModel) -> BuildModel:
    """A by-file reference to a module-level ``fn`` (anything else is passed as it is)."""
    path = inspect.getsourcefile(fn) if inspect.isfunction(fn) else None
    if path is None or "<" in fn.__qualname__:
        return fn
    return _ScriptFunction(path, fn.__qualname__)


@dataclass
class _Context:
    """Everything a worker process needs (picklable)."""

    name: str
    build_model: BuildModel
    base: dict[str, Any]
    space: dict[str, Any]
    out: str
    prune: bool
    prune_warmup: int
    prune_startup: int
    seed: int
    search_seeds: tuple[int, ...] = ()
    keep_states: int = 1  # the best finished trials whose run states are kept
    confirm_seeds: tuple[int, ...] = ()
    # The trials the study held when this command started: a resumed command seeds its
    # samplers apart from the command before it, which drew from the same seeds.
    resumed_at: int = 0
    data_cache: dict[Any, Any] = field(default_factory=dict, repr=False)


@functools.cache
def _claim_locked_storage(optuna) -> type:
    """Optuna's ``RDBStorage`` whose claims of a queued trial (its move from WAITING to
    RUNNING) hold an exclusive file lock. SQLite has no row locks (Optuna's ``SELECT ... FOR
    UPDATE`` is a no-op there), so two workers asking at the same moment could both read
    the same WAITING trial and both claim it: the same point ran twice, and the second to
    finish failed on a trial already finished (optuna/optuna#4621)."""
    import fcntl

    class ClaimLockedRDBStorage(optuna.storages.RDBStorage):
        def __init__(self, url: str, claim_lock: Path, **kwargs: Any) -> None:
            super().__init__(url, **kwargs)
            self.claim_lock = claim_lock

        def set_trial_state_values(self, trial_id, state, values=None) -> bool:
            if state != optuna.trial.TrialState.RUNNING:
                return super().set_trial_state_values(trial_id, state, values)
            with open(self.claim_lock, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
                return super().set_trial_state_values(trial_id, state, values)

    return ClaimLockedRDBStorage


@functools.cache
def _requeued_first_storage(optuna) -> type:
    """Optuna's cache over an ``RDBStorage`` (what a storage URL gets), whose list of queued
    trials puts the trials queued again (:func:`requeue_trials`) first: Optuna's workers claim
    the first trial of that list, so the runs a stopped command left unfinished continue
    (from their saved epochs) before the grid points queued earlier that never started."""
    from optuna.storages._cached_storage import _CachedStorage

    class RequeuedFirstStorage(_CachedStorage):
        def get_all_trials(self, study_id, deepcopy=True, states=None):
            trials = super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
            if states is not None and tuple(states) == (optuna.trial.TrialState.WAITING,):
                trials.sort(key=lambda t: "requeued_from" not in t.user_attrs)  # stable
            return trials

    return RequeuedFirstStorage


def _storage(optuna, out: Path | str):
    out = Path(out).resolve()
    backend = _claim_locked_storage(optuna)(
        url=f"sqlite:///{out / DB_FILE}",
        claim_lock=out / CLAIM_LOCK_FILE,
        engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}},
    )
    return _requeued_first_storage(optuna)(backend)


def _sampler(optuna, ctx: _Context, worker: int):
    seed = ctx.seed * WORKER_SEED_STRIDE + worker  # workers must not propose the same points
    if ctx.resumed_at:
        # Nor a resumed command the points of the one before it: with the same seeds, TPE's
        # random start-up draws would repeat theirs, trial for trial.
        seed = int(np.random.SeedSequence([seed, ctx.resumed_at]).generate_state(1)[0])
    if is_grid(ctx.space):
        # Every grid point is queued before the workers start (enqueue_grid) and each
        # trial pops one, so the sampler is never asked: a worker-side GridSampler would
        # race with the other workers and run some points twice and others never.
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def enqueue_grid(optuna, study, space: Mapping[str, list[Any]], limit: int) -> int:
    """Queues up to ``limit`` grid points that no trial has covered yet (finished, pruned,
    failed for a reason other than an interruption, or already queued), in grid order;
    returns how many trials are queued in all. Call it only while holding the folder lock."""
    TrialState = optuna.trial.TrialState
    names = list(space)
    rerun = _requeued(study)
    covered, waiting = set(), 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            waiting += 1
        elif t.state == TrialState.FAIL and t.user_attrs.get(INTERRUPTED):
            continue  # its queued copy covers it
        elif t.number in rerun:
            continue  # pruned, and its queued copy runs it in full
        if t.params or t.state == TrialState.WAITING:
            params = t.params or study._storage.get_trial_system_attrs(t._trial_id).get(
                "fixed_params", {}
            )
            covered.add(tuple(params.get(n) for n in names))
    for point in itertools.product(*(space[n] for n in names)):
        if waiting >= limit:
            break
        if point not in covered:
            study.enqueue_trial(dict(zip(names, point)))
            covered.add(point)
            waiting += 1
    return waiting


def start_point(space: Mapping[str, list[Any] | Range], args: argparse.Namespace) -> dict:
    """The command's own values of the searched parameters (the example's defaults unless
    given on the command line) that lie in their entries of ``space``: the first trial of a
    TPE search, so that the search also scores the configuration it would replace."""
    point = {}
    for name, spec in space.items():
        value = getattr(args, name, None)
        if isinstance(spec, Range):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            whole = not spec.integer or (number and value == int(value))
            if number and whole and spec.low <= value <= spec.high:
                point[name] = int(value) if spec.integer else float(value)
        elif value in spec:
            point[name] = value
    return point


def _pruner(optuna, ctx: _Context):
    if not ctx.prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=ctx.prune_startup, n_warmup_steps=ctx.prune_warmup
    )


def _suggest(trial, name: str, spec: list[Any] | Range) -> Any:
    if isinstance(spec, Range):
        if spec.integer:
            return trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log)
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log)
    return trial.suggest_categorical(name, spec)


def _load_data(ctx: _Context, args: argparse.Namespace):
    from pyg_multirec.experiment import load_data

    key = tuple(
        getattr(args, k, None)
        for k in ("dataset", "data_root", "seed", "cold_start", "synthetic_users",
                  "synthetic_items", "synthetic_interactions")
    )  # fmt: skip
    if key not in ctx.data_cache:  # one load per worker process
        ctx.data_cache[key] = load_data(args)
    return ctx.data_cache[key]


def run_state_path(out: Path | str, args: argparse.Namespace) -> Path:
    """The training-state file of a search or confirmation run: named by a hash of what it
    trains (parameters and seed, not where it runs), so that the same run started again,
    by a requeued trial or a resumed confirmation, continues it."""
    settings = json.dumps(_training_settings(vars(args)), sort_keys=True, default=str)
    key = hashlib.sha256(settings.encode()).hexdigest()[:RUN_KEY_DIGITS]
    return Path(out) / RUN_STATES_DIR / f"{key}.pt"


def _saved_history(path: Path) -> list[dict[str, float]]:
    """The epochs saved in ``path``; an unreadable or outdated file is removed (the run
    starts again) rather than failing the trial."""
    from pyg_multirec.checkpoint import TrainingState

    if not path.is_file():
        return []
    try:
        return TrainingState.load(path).history
    except (ValueError, OSError, RuntimeError, EOFError) as error:
        print(f"{path} cannot be resumed ({error}); the run starts again", flush=True)
        path.unlink(missing_ok=True)
        return []


def fit(
    ctx: _Context,
    args: argparse.Namespace,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    on_resume: Callable[[list[dict[str, float]]], None] | None = None,
) -> TrainResult:
    """Trains one configuration for model selection: validation only. The run saves its
    state after every epoch (:func:`run_state_path`) and continues from it when started
    again; ``on_resume(history)`` then receives the epochs already done. The state of a
    finished run stays while its trial is among the best (for :func:`retrain_seeds`); that
    of a pruned or failed one is removed, and that of a run stopped by
    ``KeyboardInterrupt`` stays (it resumes later)."""
    from pyg_multirec.experiment import train_with_args  # experiment imports this module

    path = run_state_path(ctx.out, args)
    try:
        history = _saved_history(path)
        if history and on_resume is not None:
            on_resume(history)
        data = _load_data(ctx, args)
        seed_everything(args.seed)
        model = ctx.build_model(data, args)
        result = train_with_args(
            model,
            data,
            args,
            monitor=MONITOR,
            progress=False,
            on_epoch_end=on_epoch_end,
            evaluate_test=False,  # selection uses the validation split only
            checkpoint_path=path,
            resume=True,
        )
    except KeyboardInterrupt:
        raise
    except BaseException:  # pruned or failed: it will not be run again
        path.unlink(missing_ok=True)
        raise
    return result


def _state_paths(ctx: _Context, trials: Sequence[Any], seeds: Sequence[int]) -> list[Path]:
    """The state files of the runs of ``trials`` (finished ones) with ``seeds``."""
    return [
        run_state_path(ctx.out, argparse.Namespace(**{**ctx.base, **t.params, "seed": s}))
        for t in trials
        for s in seeds
    ]


def _remove(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _objective(trial, ctx: _Context) -> float:
    optuna = _import_optuna()
    params = {name: _suggest(trial, name, spec) for name, spec in ctx.space.items()}
    seeds: Sequence[int | None] = ctx.search_seeds or (None,)  # None: the command's --seed
    values: list[float] = []
    epochs: list[int] = []  # each finished seed's best epoch
    ran: list[int] = []  # and the epochs it ran
    run = {"value": -math.inf, "epoch": 0, "epochs": 0}  # the seed being trained
    earlier = {"seconds": 0.0}  # spent by an interrupted process on the epochs it resumes

    def on_epoch_end(epoch: int, valid: dict[str, float]) -> None:
        value = valid[MONITOR]
        run["epochs"] = epoch
        if value > run["value"]:
            run["value"], run["epoch"] = value, epoch
        if values:  # later seeds: the pruner judged the first seed's curve only
            return
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    def on_resume(history: list[dict[str, float]]) -> None:
        # The resumed epochs count as this trial's: the pruner sees the whole curve.
        earlier["seconds"] += sum(row.get("seconds", 0.0) for row in history)
        for row in history:
            on_epoch_end(int(row["epoch"]), {MONITOR: row[f"valid_{MONITOR}"]})

    tic = time.perf_counter()
    try:
        for seed in seeds:
            run.update(value=-math.inf, epoch=0, epochs=0)
            args = argparse.Namespace(**{**ctx.base, **params})
            if seed is not None:
                args.seed = seed
            result = fit(ctx, args, on_epoch_end, on_resume)
            values.append(result.best_valid[MONITOR])
            epochs.append(run["epoch"])
            ran.append(run["epochs"])
    except KeyboardInterrupt:  # Optuna records it as FAIL: mark it to be run again
        trial.set_user_attr(INTERRUPTED, True)
        raise
    finally:
        if values:
            trial.set_user_attr("best_value", statistics.mean(values))
            trial.set_user_attr("best_epoch", epochs[0] if len(epochs) == 1 else epochs)
            trial.set_user_attr("epochs", ran[0] if len(ran) == 1 else ran)
        else:  # stopped in its first run
            trial.set_user_attr("best_value", run["value"] if run["epochs"] else None)
            trial.set_user_attr("best_epoch", run["epoch"])
            trial.set_user_attr("epochs", run["epochs"])
        if ctx.search_seeds:
            trial.set_user_attr("seed_values", values)
        trial.set_user_attr("seconds", time.perf_counter() - tic + earlier["seconds"])
    trial.set_user_attr("seconds_per_epoch", result.seconds_per_epoch)
    return statistics.mean(values)


def _report_trial(ctx: _Context):
    def callback(study, trial) -> None:
        params = "  ".join(f"{k}={v}" for k, v in trial.params.items())
        value = trial.user_attrs.get("best_value")
        shown = f"{value:.4f}" if value is not None else "-"
        print(
            f"trial {trial.number} {trial.state.name.lower()}: {params}  valid {MONITOR} "
            f"{shown} (best epoch {trial.user_attrs.get('best_epoch')}, "
            f"{trial.user_attrs.get('seconds', 0.0):.0f} s)",
            flush=True,
        )
        write_trials_tables(study, Path(ctx.out), list(ctx.space))
        if trial.state.name == "COMPLETE":
            _keep_best_states(ctx, study.get_trials(deepcopy=False))

    return callback


def _point(trial) -> tuple:
    """A trial's parameters as a hashable key: equal keys, the same configuration."""
    return tuple(sorted(trial.params.items()))


def best_distinct(trials: Sequence[Any], count: int | None = None) -> list[Any]:
    """The finished trials, best first (the earlier of equal values), each configuration once
    (its best trial): a search that was resumed may have drawn a point twice, and confirming
    both copies would confirm fewer configurations than asked."""
    complete = sorted(
        (t for t in trials if t.state.name == "COMPLETE"), key=lambda t: (-t.value, t.number)
    )
    seen, best = set(), []
    for t in complete:
        if _point(t) not in seen:
            seen.add(_point(t))
            best.append(t)
    return best if count is None else best[:count]


def _keep_best_states(ctx: _Context, trials: Sequence[Any]) -> list[Any]:
    """Removes the run states of the finished trials outside the ``ctx.keep_states`` best
    (only these may serve again) and returns those best. Safe in parallel workers: a trial
    that finishes later can only push others out of the best, never bring one back."""
    best = best_distinct(trials, ctx.keep_states)
    kept = {t.number for t in best}
    others = [t for t in trials if t.state.name == "COMPLETE" and t.number not in kept]
    seeds = (*(ctx.search_seeds or (ctx.seed,)), *ctx.confirm_seeds)
    _remove(_state_paths(ctx, others, seeds))
    return best


def _worker(ctx: _Context, quota: int, worker: int, threads: int | None) -> None:
    """Runs up to ``quota`` trials of the study in ``ctx.out`` (one process)."""
    optuna = _import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _set_threads(threads)
    study = optuna.load_study(
        study_name=STUDY_NAME,
        storage=_storage(optuna, ctx.out),
        sampler=_sampler(optuna, ctx, worker),
        pruner=_pruner(optuna, ctx),
    )
    study.optimize(
        lambda trial: _objective(trial, ctx),
        n_trials=quota,
        catch=(FloatingPointError,),  # a diverging configuration fails, the search goes on
        callbacks=[_report_trial(ctx)],
    )


# ---- the study folder --------------------------------------------------------------------


@contextmanager
def _folder_lock(out: Path) -> Iterator[None]:
    import fcntl

    with open(out / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{out} is used by another running 'tune' command") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fixed_settings(args: argparse.Namespace, space: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in sorted(vars(args).items())
        if k not in RUN_ONLY and k not in TUNE_ONLY and k not in space
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def open_study(
    optuna,
    out: Path,
    name: str,
    args: argparse.Namespace,
    space: Mapping[str, Any],
    search_seeds: Sequence[int] = (),
):
    """Creates the study in ``out`` or opens the existing one, which must belong to the same
    model, search space, fixed settings and search seeds."""
    storage = _storage(optuna, out)
    expected = {
        "model": name,
        "space": _jsonable(space_to_json(space)),
        "settings": _jsonable(_fixed_settings(args, space)),
    }
    if search_seeds:  # absent from single-seed studies (and from those made before the flag)
        expected["search_seeds"] = list(search_seeds)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    if STUDY_NAME not in existing:
        if existing:
            raise ValueError(f"{out / DB_FILE} holds no 'tune' study; choose another --out")
        study = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="maximize")
        for key, value in expected.items():
            study.set_user_attr(key, value)
        return study
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    found = study.user_attrs
    if found.get("model") != name:
        raise ValueError(
            f"{out} holds a tune study of the {found.get('model')!r} model, not {name!r}; "
            "choose another --out"
        )
    if found.get("space") != expected["space"]:
        raise ValueError(
            f"{out} holds a study of another search space ({json.dumps(found.get('space'))}); "
            "repeat its --space or choose another --out"
        )
    if found.get("settings") != expected["settings"]:
        old, new = found.get("settings", {}), expected["settings"]
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        raise ValueError(
            f"{out} holds a study run with other settings ({shown}); repeat them or choose "
            "another --out"
        )
    if found.get("search_seeds") != expected.get("search_seeds"):
        raise ValueError(
            f"{out} holds a study scored over --search-seeds {found.get('search_seeds')}, "
            f"not {expected.get('search_seeds')}; repeat them or choose another --out"
        )
    return study


def _requeued(study) -> set[int]:
    """The numbers of the trials that a later trial runs again (``requeued_from``)."""
    return {
        t.user_attrs["requeued_from"]
        for t in study.get_trials(deepcopy=False)
        if "requeued_from" in t.user_attrs
    }


def requeue_trials(
    optuna, study, rerun_pruned: bool = False, retry_failed: bool = False
) -> tuple[int, int, int]:
    """Queues again the trials a stopped search did not finish: those left running by a
    killed worker (marked failed and ``interrupted`` here) and those failed by Ctrl-C
    (marked ``interrupted`` by the objective); with ``rerun_pruned`` (a command that
    prunes nothing), also the trials an earlier command pruned, to be run in full, and with
    ``retry_failed`` the trials an error failed (both are then :obj:`SUPERSEDED`). Returns
    how many interrupted, pruned and failed trials were queued. Call it only while holding
    the folder lock (no live worker)."""
    TrialState = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    requeued = _requeued(study)
    interrupted = pruned = failed = 0
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            interrupted += 1
        elif trial.number in requeued:
            continue
        elif trial.state == TrialState.FAIL and trial.user_attrs.get(INTERRUPTED):
            interrupted += 1
        elif trial.state == TrialState.PRUNED and rerun_pruned:
            pruned += 1
        elif trial.state == TrialState.FAIL and retry_failed:
            failed += 1
        else:
            continue
        if trial.params:  # its queued copy runs the same point again
            study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
    return interrupted, pruned, failed


def _done(optuna, study) -> int:
    """Trials that count towards the budget: finished, not interrupted, not superseded."""
    rerun = _requeued(study)
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and not t.user_attrs.get(INTERRUPTED) and t.number not in rerun
    )


def _threads_per_job(jobs: int) -> int | None:
    """Torch threads of each of ``jobs`` processes: the cores shared out, unless the user
    set ``OMP_NUM_THREADS`` (then None: leave torch's choice)."""
    return None if os.environ.get("OMP_NUM_THREADS") else max(1, (os.cpu_count() or 1) // jobs)


def _set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def _pool(jobs: int):
    """A pool of ``jobs`` spawned processes that share the cores as the search workers do."""
    from concurrent.futures import ProcessPoolExecutor

    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    return ProcessPoolExecutor(
        jobs, mp_context=spawn, initializer=_set_threads, initargs=(_threads_per_job(jobs),)
    )


def _run_workers(ctx: _Context, remaining: int, jobs: int) -> None:
    jobs = max(1, min(jobs, remaining))
    quotas = [remaining // jobs + (i < remaining % jobs) for i in range(jobs)]
    if jobs == 1:
        _worker(ctx, quotas[0], 0, None)
        return
    threads = _threads_per_job(jobs)
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    procs = [spawn.Process(target=_worker, args=(ctx, q, i, threads)) for i, q in enumerate(quotas)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [i for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"tune worker(s) {failed} exited with an error (see above)")


# ---- confirmation of the best trials -----------------------------------------------------


def _confirm_run(ctx: _Context, params: Mapping[str, Any], seed: int) -> float:
    """The best valid metric of one configuration and seed (no test, no files)."""
    args = argparse.Namespace(**{**ctx.base, **params, "seed": seed})
    return fit(ctx, args).best_valid[MONITOR]


def _trial_seed_values(trial) -> list[float]:
    """The search's per-seed valid scores of a finished trial (one without --search-seeds)."""
    return list(trial.user_attrs.get("seed_values") or [trial.value])


def confirm_best(
    ctx: _Context, complete: Sequence[Any], top: int, seeds: Sequence[int], jobs: int = 1
) -> tuple[Any, dict[str, Any]]:
    """Trains the ``top`` best of the ``complete`` trials again for ``seeds`` (validation
    only; finished runs are read back from ``CONFIRM_FILE``) and returns the trial with the
    highest mean valid score over its search and confirmation runs, with those scores.
    The ``top`` best are distinct configurations (:func:`best_distinct`)."""
    ranked = best_distinct(complete, top)
    path = Path(ctx.out) / CONFIRM_FILE
    done: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.is_file() else {}
    todo = [(t, s) for t in ranked for s in seeds if str(s) not in done.get(str(t.number), {})]

    def record(trial, seed: int, value: float) -> None:
        done.setdefault(str(trial.number), {})[str(seed)] = value
        tmp = path.with_name(f".{CONFIRM_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(done, indent=1))
        os.replace(tmp, path)
        print(f"confirm trial {trial.number}, seed {seed}: valid {MONITOR} {value:.4f}", flush=True)

    if min(jobs, len(todo)) > 1:
        with _pool(min(jobs, len(todo))) as pool:
            futures = [(t, s, pool.submit(_confirm_run, ctx, t.params, s)) for t, s in todo]
            for t, s, future in futures:
                record(t, s, future.result())
    else:
        for t, s in todo:
            record(t, s, _confirm_run(ctx, t.params, s))
    scores = {}
    for t in ranked:
        search = _trial_seed_values(t)
        confirm = {str(s): done[str(t.number)][str(s)] for s in seeds}
        mean = statistics.mean(search + list(confirm.values()))
        scores[t.number] = {"search": search, "confirm": confirm, "mean": mean}
    best = max(ranked, key=lambda t: (scores[t.number]["mean"], -t.number))
    return best, scores


# ---- outputs -----------------------------------------------------------------------------


def _joined(value: Any) -> Any:
    return "/".join(map(str, value)) if isinstance(value, list) else value


def trial_rows(study, params: Sequence[str]) -> list[dict[str, Any]]:
    """One row per trial: number, state, parameters, valid metric (with ``--search-seeds``
    the mean, and each seed's in ``valid_per_seed``), best epoch, seconds."""
    per_seed = bool(study.user_attrs.get("search_seeds"))
    rerun = _requeued(study)
    rows, finished = [], set()
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(INTERRUPTED):
            state = INTERRUPTED
        elif t.state.name in ("PRUNED", "FAIL") and t.number in rerun:
            state = SUPERSEDED
        else:
            state = t.state.name.lower()
        if state == "complete":
            state = REPEATED if _point(t) in finished else state
            finished.add(_point(t))
        value = t.value if t.value is not None else t.user_attrs.get("best_value")
        seconds = t.user_attrs.get("seconds")
        if seconds is None and state != INTERRUPTED and t.datetime_start and t.datetime_complete:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        row = {"trial": t.number, "state": state}
        row.update({p: t.params.get(p) for p in params})
        row[f"valid_{MONITOR}"] = value
        if per_seed:
            values = t.user_attrs.get("seed_values")
            row["valid_per_seed"] = "/".join(f"{v:.4f}" for v in values) if values else None
        row.update(
            {
                "best_epoch": _joined(t.user_attrs.get("best_epoch")),
                "epochs": _joined(t.user_attrs.get("epochs")),
                "seconds": seconds,
            }
        )
        rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3g}"
    return str(value)


def same_curves(trials: Sequence[Any]) -> list[tuple[list[int], list[str]]]:
    """Groups of finished trials that differ in their parameters but reported the same
    validation score at every epoch, each with the parameters that differ within it: a
    sign that, over those values, these parameters change nothing the metric sees (on
    ml100k, LightGCN's L2 weights 1e-4, 1e-5 and 1e-6 gave bit-identical curves)."""
    groups: dict[tuple, list[Any]] = {}
    for t in trials:
        if t.state.name == "COMPLETE" and t.intermediate_values:
            groups.setdefault(tuple(sorted(t.intermediate_values.items())), []).append(t)
    found = []
    for group in groups.values():
        differ = sorted(
            {k for t in group for k in t.params if t.params[k] != group[0].params.get(k)}
        )
        if differ:
            found.append(([t.number for t in group], differ))
    return found


def write_trials_tables(study, out: Path, params: Sequence[str]) -> None:
    """Writes ``trials.csv`` (by trial number) and ``trials.md`` (best first), atomically."""
    rows = trial_rows(study, params)
    if not rows:
        return
    keys = list(rows[0])
    tmp = out / f".{TRIALS_CSV}.{os.getpid()}"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / TRIALS_CSV)
    metric = f"valid_{MONITOR}"
    ranked = sorted(rows, key=lambda r: (r[metric] is None, -(r[metric] or 0.0), r["trial"]))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(r[k]) for k in keys) + " |" for r in ranked]
    tmp = out / f".{TRIALS_MD}.{os.getpid()}"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out / TRIALS_MD)


def _config(args: argparse.Namespace, params: Mapping[str, Any], seed: int, out: Path):
    config = {k: v for k, v in vars(args).items() if k not in TUNE_ONLY}
    config.update(params)
    config.update(seed=seed, out=str(out), resume=False, quiet=True, plots=False, command="train")
    return argparse.Namespace(**config)


def _training_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a seed run trains, without where or how it ran (:obj:`RUN_ONLY`): a study
    folder that was moved, or continued with another ``--device`` or ``--data-root``,
    keeps its finished seeds."""
    return _jsonable({k: v for k, v in config.items() if k not in RUN_ONLY})


def _train_seed(
    name: str, build_model: BuildModel, args: argparse.Namespace, finished: Path | None = None
) -> dict[str, Any]:
    """Trains one seed run in ``args.out`` (or reads it back, or continues it). ``finished``:
    the state of a run of the same configuration and seed that the search or confirmation
    already trained to its end; the seed run takes it over and only reads the test split."""
    from pyg_multirec.experiment import _train

    out = Path(args.out)
    metrics_file = out / "metrics.json"
    settings = _training_settings(vars(args))
    if metrics_file.is_file():
        saved = json.loads(metrics_file.read_text())
        if _training_settings(saved.get("config") or {}) == settings:
            return saved  # finished earlier with the same configuration
    # An interrupted run of the same configuration continues from its last.pt; another
    # configuration (the search found a new best since) starts afresh over it.
    settings_file = out / SEED_SETTINGS_FILE
    same = settings_file.is_file() and json.loads(settings_file.read_text()) == settings
    out.mkdir(parents=True, exist_ok=True)
    if finished is not None and finished.is_file() and not same:
        from pyg_multirec.experiment import LAST_CHECKPOINT

        os.replace(finished, out / LAST_CHECKPOINT)
        same = True
    settings_file.write_text(json.dumps(settings, indent=1))
    args = argparse.Namespace(**{**vars(args), "resume": same})
    _train(name, build_model, args)
    return json.loads(metrics_file.read_text())


def retrain_seeds(
    name: str,
    build_model: BuildModel,
    args: argparse.Namespace,
    params: Mapping[str, Any],
    seeds: Sequence[int],
    out: Path,
    jobs: int = 1,
) -> dict[int, dict[str, Any]]:
    """Trains the configuration ``args`` + ``params`` once per seed (the ``train`` outputs
    in ``out/seeds/sSEED``; finished seeds are read back) and returns their metrics.json."""
    configs = [_config(args, params, s, out / SEEDS_DIR / f"s{s}") for s in seeds]
    finished = [run_state_path(out, c) for c in configs]  # same key: the same training
    jobs = max(1, min(jobs, len(configs)))
    if jobs == 1:
        results = [_train_seed(name, build_model, c, f) for c, f in zip(configs, finished)]
    else:
        with _pool(jobs) as pool:
            results = list(pool.map(_train_seed, [name] * len(configs),
                                    [_portable(build_model)] * len(configs), configs,
                                    finished))  # fmt: skip
    return dict(zip(seeds, results))


def summarise_seeds(runs: Mapping[int, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Test mean and (sample) standard deviation over seeds of every test metric."""
    tests = [r["test"] for r in runs.values()]
    keys = [k for k in tests[0] if k != "num_rows"] if tests else []
    mean = {k: statistics.mean(t[k] for t in tests) for k in keys}
    std = {k: statistics.stdev(t[k] for t in tests) if len(tests) > 1 else 0.0 for k in keys}
    return {"test_mean": mean, "test_std": std}


def _parse_seeds(text: str | None, flag: str = "--seeds") -> list[int]:
    if text is None:
        return []
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{flag} has duplicates: {text!r}")
    return seeds


def run_tune(
    name: str,
    build_model: BuildModel,
    args: argparse.Namespace,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    search_space: Mapping[str, SpaceSpec] | None = None,
) -> dict[str, Any]:
    """The ``tune`` sub-command: search, write the tables and ``best.json``, re-train seeds.

    Args:
        name: the model's name.
        build_model: ``(data, args) -> Recommender``.
        args: the parsed ``tune`` command line (training flags, model flags, search flags).
        add_arguments: the example's flag function (to check parameter names and values).
        search_space: the example's default space (``{dest: list | "LOW:HIGH[:log]"}``).

    Returns:
        the content of ``best.json``.
    """
    optuna = _import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    flags = searchable_flags(add_arguments)
    space = resolve_space(search_space, args.space, flags)
    seeds = _parse_seeds(args.seeds)
    search_seeds = _parse_seeds(getattr(args, "search_seeds", None), "--search-seeds")
    confirm_top = getattr(args, "confirm_top", 0)
    confirm_seeds = _parse_seeds(getattr(args, "confirm_seeds", None), "--confirm-seeds")
    if confirm_top < 0:
        raise ValueError(f"--confirm-top must be >= 0, got {confirm_top}")
    if bool(confirm_top) != bool(confirm_seeds):
        raise ValueError("--confirm-top and --confirm-seeds go together (give both or neither)")
    searched = set(search_seeds or [args.seed])
    if searched & set(confirm_seeds):
        raise ValueError(
            f"--confirm-seeds {sorted(searched & set(confirm_seeds))} already scored the search "
            "(choose other seeds)"
        )
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if args.trials is not None and args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    from pyg_multirec.train import resolve_device

    resolve_device(args.device)
    cold = "-cold" if getattr(args, "cold_start", False) else ""
    out = Path(args.out or f"runs/tune/{name}-{args.dataset}{cold}")
    out.mkdir(parents=True, exist_ok=True)
    total = args.trials or (grid_size(space) if is_grid(space) else DEFAULT_TPE_TRIALS)
    if is_grid(space):
        total = min(total, grid_size(space))
    base = {k: v for k, v in vars(args).items() if k not in TUNE_ONLY}
    base.update(quiet=True, plots=False, resume=False)
    ctx = _Context(
        name=name,
        build_model=_portable(build_model),
        base=base,
        space=space,
        out=str(out),
        prune=not args.no_prune,
        prune_warmup=args.prune_warmup,
        prune_startup=args.prune_startup,
        seed=args.seed,
        search_seeds=tuple(search_seeds),
        keep_states=max(confirm_top, 1),
        confirm_seeds=tuple(confirm_seeds),
    )
    with _folder_lock(out):
        study = open_study(optuna, out, name, args, space, search_seeds)
        ctx.resumed_at = len(study.get_trials(deepcopy=False))
        interrupted, pruned, failed = requeue_trials(
            optuna, study, rerun_pruned=args.no_prune, retry_failed=args.retry_failed
        )
        if interrupted:
            print(f"{interrupted} trial(s) interrupted earlier: queued again")
        if pruned:
            print(f"{pruned} trial(s) pruned earlier: queued again, to run in full (--no-prune)")
        if failed:
            print(f"{failed} trial(s) failed earlier: queued again (--retry-failed)")
        remaining = max(0, total - _done(optuna, study))
        kind = f"grid of {grid_size(space)}" if is_grid(space) else "TPE"
        if args.skip_search:
            remaining = 0
        elif is_grid(space) and remaining:
            remaining = enqueue_grid(optuna, study, space, remaining)  # one trial per point
        elif remaining and not study.trials and (start := start_point(space, args)):
            study.enqueue_trial(start)
            shown = "  ".join(f"{k}={v}" for k, v in start.items())
            print(f"trial 0: the command's own values, {shown}", flush=True)
        print(
            f"tune {name} on {args.dataset}: {kind}, {total} trials, {total - remaining} "
            f"done, {remaining} to run with {min(args.jobs, max(remaining, 1))} job(s); {out}",
            flush=True,
        )
        if remaining:
            _run_workers(ctx, remaining, args.jobs)
        study = optuna.load_study(study_name=STUDY_NAME, storage=_storage(optuna, out))
        write_trials_tables(study, out, list(space))
        for numbers, differ in same_curves(study.get_trials(deepcopy=False)):
            print(
                f"note: trials {', '.join(map(str, numbers))} differ in {', '.join(differ)} "
                f"but gave the same valid {MONITOR} at every epoch: over those values, "
                f"{'it changes' if len(differ) == 1 else 'they change'} nothing the metric "
                "sees (a narrower --space saves trials)",
                flush=True,
            )
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not complete:
            raise ValueError(f"no trial of {out} has completed: nothing to select")
        best = max(complete, key=lambda t: (t.value, -t.number))
        # Only the best trials' finished runs may serve again (confirmation, seed runs).
        kept = _keep_best_states(ctx, complete)
        selected_on = f"valid {MONITOR}" + (
            f", mean over seeds {search_seeds}" if search_seeds else ""
        )
        valid, confirmed = best.value, {}
        if confirm_top:
            confirmed_count = min(confirm_top, len(best_distinct(complete)))
            if confirmed_count < confirm_top:
                print(
                    f"--confirm-top {confirm_top}: only {confirmed_count} configuration(s) "
                    "completed (the other trials were pruned, failed or repeated one); "
                    "confirming those",
                    flush=True,
                )
            best, confirmed = confirm_best(ctx, complete, confirm_top, confirm_seeds, args.jobs)
            valid = confirmed[best.number]["mean"]
            selected_on += (
                f"; the best {confirmed_count} re-scored by the mean with seeds {confirm_seeds}"
            )
        states = [r["state"] for r in trial_rows(study, [])]
        summary: dict[str, Any] = {
            "model": name,
            "dataset": args.dataset,
            "selected_on": selected_on,
            "params": best.params,
            "valid": valid,
            "best_epoch": best.user_attrs.get("best_epoch"),
            "trial": best.number,
            **({"valid_per_seed": best.user_attrs.get("seed_values")} if search_seeds else {}),
            **({"confirmed": {str(k): v for k, v in confirmed.items()}} if confirmed else {}),
            "trials": {s: states.count(s) for s in sorted(set(states))},
            "space": space_to_json(space),
            "config": _jsonable({**base, **best.params}),
        }
        print(
            f"best: trial {best.number}  "
            + "  ".join(f"{k}={v}" for k, v in best.params.items())
            + f"  valid {MONITOR} {valid:.4f} (epoch {summary['best_epoch']})"
        )
        if seeds:
            runs = retrain_seeds(name, build_model, args, best.params, seeds, out, args.jobs)
            summary["seeds"] = {
                str(s): {
                    "test": r["test"],
                    "best_valid": r["best_valid"],
                    "best_epoch": r["best_epoch"],
                    "seconds_per_epoch": r["seconds_per_epoch"],
                    "device": r["config"].get("device", "cpu"),
                }
                for s, r in runs.items()
            }
            summary.update(summarise_seeds(runs))
            _remove(_state_paths(ctx, kept, [*(search_seeds or [args.seed]), *confirm_seeds]))
            cells = [
                f"{k} {summary['test_mean'][k]:.4f} ± {summary['test_std'][k]:.4f}"
                for k in ("recall@20", "ndcg@20")
                if k in summary["test_mean"]
            ]
            print(f"test over seeds {','.join(map(str, seeds))}: " + "  ".join(cells))
        (out / BEST_FILE).write_text(json.dumps(summary, indent=1, default=str))
        print(f"wrote {out / BEST_FILE}, {out / TRIALS_CSV}, {out / TRIALS_MD}")
    return summary
