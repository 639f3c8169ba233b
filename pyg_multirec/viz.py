"""Plots of training runs and learned representations (optional extra: ``pyg_multirec[viz]``).

Both functions draw on a :class:`matplotlib.figure.Figure` rendered off-screen (Agg), so
they work without a display and leave :mod:`matplotlib.pyplot`'s global state alone.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyg_multirec._checks import check_int

__all__ = ["plot_training_curves", "plot_tsne"]

INSTALL_HINT = "pip install pyg_multirec[viz]"
CURVES_SIZE = (10.0, 4.0)  # inches
TSNE_SIZE = (7.0, 6.0)
DPI = 120
TSNE_PERPLEXITY = 30.0
#: t-SNE needs the perplexity well below the number of points; cap it at (n - 1) / 3.
PERPLEXITY_POINTS_RATIO = 3.0
MIN_POINTS_PER_KEY = 2
#: Up to this many points t-SNE runs its exact O(n^2) method; above it, Barnes-Hut.
EXACT_TSNE_MAX_POINTS = 200
POINT_SIZE = 6.0
POINT_ALPHA = 0.6
LEGEND_MARKER_SCALE = 3.0
TERM_LINESTYLE = "--"
BEST_LINESTYLE = ":"
#: Markers of the representation parts, in order of first appearance (generic, unique, ...).
PART_MARKERS = ("o", "^", "s", "D", "v", "P", "X")
#: Colours: modality i takes pair i of 'tab20' (dark for its first part, light for the next).
PALETTE = "tab20"
PALETTE_PAIRS = 10


def _require_matplotlib() -> Any:
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"plotting needs matplotlib: {INSTALL_HINT}") from None
    return matplotlib, Figure


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


# --------------------------------------------------------------------------------------
# training curves
# --------------------------------------------------------------------------------------


def _load_history(history: Sequence[Mapping[str, Any]] | str | Path) -> list[dict[str, float]]:
    if isinstance(history, (str, Path)):
        path = Path(history)
        if not path.is_file():
            raise FileNotFoundError(f"history file {path} does not exist")
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as f:
                rows: Any = [
                    {k: float(v) for k, v in row.items() if v not in ("", None)}
                    for row in csv.DictReader(f)
                ]
        else:
            try:
                rows = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"history file {path} is not valid JSON ({err})") from err
            if isinstance(rows, dict) and "history" in rows:  # a run's metrics.json
                rows = rows["history"]
        history = rows
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise TypeError(
            f"history must be a list of per-epoch dicts or a path, got {type(history).__name__}"
        )
    if not history:
        raise ValueError("history is empty: no epoch to plot")
    if not all(isinstance(row, Mapping) for row in history):
        raise TypeError("history must be a list of dicts (one per epoch)")
    return [dict(row) for row in history]


def _column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    missing = [i for i, row in enumerate(rows) if key not in row]
    if missing:
        keys = sorted({k for row in rows for k in row})
        raise ValueError(f"history has no {key!r} in {len(missing)} epochs; its keys are {keys}")
    try:
        return np.array([float(row[key]) for row in rows], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"history values of {key!r} must be numbers ({err})") from err


def plot_training_curves(
    history: Sequence[Mapping[str, Any]] | str | Path,
    path: str | Path,
    metric: str = "recall@20",
) -> Path:
    """Plots the training loss and a validation metric against the epoch.

    Left: ``train_loss`` (solid) and any other logged training terms ``train_*``
    (dashed, e.g. ``train_bpr``, ``train_align``). Right: ``valid_{metric}`` with the best
    epoch marked.

    Args:
        history: the per-epoch dictionaries in ``history`` of a
            :class:`~pyg_multirec.train.TrainResult` (keys ``epoch``, ``train_loss``,
            ``valid_recall@20``, ...), or the path of a run's ``history.json`` /
            ``history.csv`` / ``metrics.json``.
        path: image file to write; the format follows its suffix (``.png``, ``.pdf``, ...).
        metric: validation metric to plot (default ``'recall@20'``).

    Returns:
        ``path``.

    Raises:
        ImportError: matplotlib is not installed (``pip install pyg_multirec[viz]``).
        FileNotFoundError: ``history`` names a missing file.
        ValueError: an empty history, or one without ``epoch``, ``train_loss`` or
            ``valid_{metric}``.
    """
    _, Figure = _require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    rows = _load_history(history)
    epochs = _column(rows, "epoch")
    loss = _column(rows, "train_loss")
    valid_key = f"valid_{metric}"
    valid = _column(rows, valid_key)
    terms = sorted(
        {k for row in rows for k in row if k.startswith("train_") and k != "train_loss"}
        & set.intersection(*(set(row) for row in rows))
    )

    fig = Figure(figsize=CURVES_SIZE)
    ax_loss, ax_valid = fig.subplots(1, 2)
    ax_loss.plot(epochs, loss, label="train_loss")
    for term in terms:
        ax_loss.plot(epochs, _column(rows, term), TERM_LINESTYLE, label=term)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("training loss")
    if terms:
        ax_loss.legend()

    ax_valid.plot(epochs, valid, marker=".", label=valid_key)
    best = int(np.nanargmax(valid)) if np.isfinite(valid).any() else 0
    ax_valid.axvline(
        epochs[best],
        linestyle=BEST_LINESTYLE,
        color="grey",
        label=f"best: {valid[best]:.4f} at epoch {epochs[best]:g}",
    )
    for ax in (ax_loss, ax_valid):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_valid.set_xlabel("epoch")
    ax_valid.set_ylabel(metric)
    ax_valid.set_title(f"validation {metric}")
    ax_valid.legend()
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------------------
# t-SNE of representations
# --------------------------------------------------------------------------------------


def _as_matrix(value: Any, key: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch here
        value = value.detach().to("cpu").double().numpy()
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(
            f"representations[{key!r}] must be 2-D [num_items, dim], got shape "
            f"{tuple(array.shape)}"
        )
    if array.dtype.kind not in "biuf":
        raise TypeError(f"representations[{key!r}] must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"representations[{key!r}] contains NaN or infinite values")
    return array


def _split_key(key: Any) -> tuple[str, str]:
    if not isinstance(key, str) or key.count("/") != 1 or "" in key.split("/"):
        raise ValueError(
            f"representation key {key!r} must look like 'modality/part', e.g. 'text/generic'"
        )
    modality, part = key.split("/")
    return modality, part


def plot_tsne(
    representations: Mapping[str, Any],
    path: str | Path,
    max_points: int = 2000,
    seed: int = 0,
    perplexity: float = TSNE_PERPLEXITY,
) -> Path:
    r"""Plots a 2-D t-SNE of items' representations, one colour per modality and part.

    The representations of all keys are embedded jointly, so that the picture shows
    whether, e.g., the generic parts of different modalities overlap while their unique
    parts stay apart (SEA, Fig. 5-6). Each modality gets a colour pair (dark for its first
    part, light for the next) and each part a marker.

    The same random subset of items is drawn for every key: ``max_points // len(keys)``
    items (all of them if there are fewer), so at most ``max_points`` points in total.
    t-SNE is quadratic-ish in the number of points: 2000 points take tens of seconds on a
    laptop CPU; lower ``max_points`` for a quick look.

    Args:
        representations: ``{'modality/part': [num_items, dim]}`` tensors or arrays, e.g.
            ``{'image/generic': ..., 'image/unique': ..., 'text/generic': ...,
            'text/unique': ...}``; all with the same shape.
        path: image file to write; the format follows its suffix.
        max_points: cap on the total number of plotted points.
        seed: seed of the item subset and of t-SNE.
        perplexity: t-SNE perplexity (lowered automatically for few points).

    Returns:
        ``path``.

    Raises:
        ImportError: matplotlib is not installed (``pip install pyg_multirec[viz]``).
        ValueError: an empty mapping, a key not of the form ``'modality/part'``, arrays that
            are not 2-D, differ in shape or hold NaN, or ``max_points`` too small for two
            items per key.
    """
    matplotlib, Figure = _require_matplotlib()
    if not isinstance(representations, Mapping) or not representations:
        raise ValueError("representations must be a non-empty dict {'modality/part': array}")
    keys = list(representations)
    labels = [_split_key(k) for k in keys]
    arrays = [_as_matrix(representations[k], k) for k in keys]
    shapes = {k: a.shape for k, a in zip(keys, arrays)}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"representations must all have the same shape, got {shapes}")
    check_int(max_points, "max_points")
    num_items = arrays[0].shape[0]
    per_key = min(num_items, max_points // len(keys))
    if per_key < MIN_POINTS_PER_KEY:
        raise ValueError(
            f"max_points={max_points} leaves fewer than {MIN_POINTS_PER_KEY} points for each of "
            f"the {len(keys)} representations (and there are {num_items} items)"
        )
    if not perplexity > 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity}")

    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    items = np.sort(rng.choice(num_items, size=per_key, replace=False))
    points = np.concatenate([a[items] for a in arrays])
    capped = min(perplexity, max(1.0, (points.shape[0] - 1) / PERPLEXITY_POINTS_RATIO))
    method = "exact" if points.shape[0] <= EXACT_TSNE_MAX_POINTS else "barnes_hut"
    coords = TSNE(
        n_components=2, perplexity=capped, init="pca", random_state=seed, method=method
    ).fit_transform(points)

    colours = matplotlib.colormaps[PALETTE]
    modalities = list(dict.fromkeys(m for m, _ in labels))
    parts = list(dict.fromkeys(p for _, p in labels))
    fig = Figure(figsize=TSNE_SIZE)
    ax = fig.subplots()
    for index, (key, (modality, part)) in enumerate(zip(keys, labels)):
        pair = modalities.index(modality) % PALETTE_PAIRS
        shade = parts.index(part) % 2
        block = coords[index * per_key : (index + 1) * per_key]
        ax.scatter(
            block[:, 0],
            block[:, 1],
            s=POINT_SIZE,
            alpha=POINT_ALPHA,
            color=colours(2 * pair + shade),
            marker=PART_MARKERS[parts.index(part) % len(PART_MARKERS)],
            label=key,
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of item representations ({per_key} items each)")
    ax.legend(markerscale=LEGEND_MARKER_SCALE, loc="best")
    fig.tight_layout()
    return _save(fig, path)
