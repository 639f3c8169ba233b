"""Top-K ranking metrics of the MMRec full-ranking protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor

from pyg_multirec._checks import check_tensor, out_of_range

DEFAULT_KS = (10, 20)
#: Order of the metrics of one cut-off in the returned dictionary.
METRIC_NAMES = ("recall", "ndcg", "precision", "map", "hit")
REDUCTIONS = ("mean", "sum")
#: Key of the number of evaluated rows in the returned dictionary.
NUM_ROWS_KEY = "num_rows"
#: Devices without float64 support; metric arithmetic falls back to float32 there.
NO_FLOAT64_DEVICES = ("mps",)


def ranking_metrics(
    scores: Tensor,
    targets: Tensor,
    ks: Union[int, Sequence[int]] = DEFAULT_KS,
    exclude: Optional[Tensor] = None,
    reduction: str = "mean",
) -> dict[str, float]:
    r"""Top-:math:`K` ranking metrics of score rows against sets of target items, defined
    as in the `MMRec <https://github.com/enoche/MMRec>`_ toolbox (``utils/metrics.py``),
    which SEA and MICRO report.

    For a row :math:`u` with the set of targets :math:`T_u \neq \emptyset`, let
    :math:`h_r \in \{0, 1\}` say whether the item at rank :math:`r` (1-based, by
    decreasing score) is in :math:`T_u`, and :math:`n_K = \min(|T_u|, K)`:

    .. math::
        \mathrm{Recall@}K &= \frac{1}{|T_u|} \sum_{r=1}^{K} h_r, \qquad
        \mathrm{Precision@}K = \frac{1}{K} \sum_{r=1}^{K} h_r, \qquad
        \mathrm{Hit@}K = \mathbb{1}\Big[\sum_{r=1}^{K} h_r > 0\Big],

        \mathrm{NDCG@}K &= \frac{\sum_{r=1}^{K} h_r / \log_2(r + 1)}
        {\sum_{r=1}^{n_K} 1 / \log_2(r + 1)}, \qquad
        \mathrm{MAP@}K = \frac{1}{n_K} \sum_{r=1}^{K} h_r \,
        \frac{1}{r} \sum_{s=1}^{r} h_s.

    Every metric is averaged (or summed, with :obj:`reduction="sum"`) over the rows that
    have at least one target; rows without targets are ignored.

    Items listed in :obj:`exclude` (e.g. the user's training items) get the score
    :math:`-\infty` before ranking, so they are never recommended. A pair that is both a
    target and excluded can never be hit but still counts in :math:`|T_u|`; under the MMRec
    protocol this does not happen since the training, validation and test interactions
    are disjoint. Duplicate target pairs count once. Ties between equal scores are broken
    by :func:`torch.topk`, i.e. in no guaranteed order.

    Args:
        scores (torch.Tensor): floating scores, one row per user, one column per item.
        targets (torch.Tensor): long :obj:`(row, item)` pairs of relevant items.
        ks (int or Sequence[int], optional): the cut-offs :math:`K`, each in
            :math:`[1, I]`. (default: :obj:`(10, 20)`)
        exclude (torch.Tensor, optional): long :obj:`(row, item)` pairs that may not be
            recommended. (default: :obj:`None`)
        reduction (str, optional): :obj:`"mean"` over the evaluated rows, or :obj:`"sum"`
            so that a batched evaluator can add batches up and divide by the total of
            :obj:`"num_rows"` at the end. (default: :obj:`"mean"`)

    Returns:
        dict: :obj:`"recall@K"`, :obj:`"ndcg@K"`, :obj:`"precision@K"`, :obj:`"map@K"`
        and :obj:`"hit@K"` for every :math:`K` in :obj:`ks`, and :obj:`"num_rows"`, the
        number of rows with at least one target (an :obj:`int`).

    Shapes:
        - **input:**
          scores :math:`(R, I)`,
          targets :math:`(2, E_T)`,
          exclude :math:`(2, E_X)` *(optional)*
        - **output:** a dictionary of Python numbers
    """
    _check_scores(scores)
    num_rows, num_items = scores.shape
    ks = _check_ks(ks, num_items)
    if reduction not in REDUCTIONS:
        raise ValueError(f"'reduction' must be one of {REDUCTIONS} (got {reduction!r})")
    device = scores.device
    targets = _check_pairs(targets, "targets", num_rows, num_items).to(device)
    if targets.size(1) == 0:
        raise ValueError("'targets' is empty: there is nothing to evaluate")
    if exclude is not None:
        exclude = _check_pairs(exclude, "exclude", num_rows, num_items).to(device)

    # Distinct targets per row; only rows with at least one target are ranked.
    keys = torch.unique(targets[0] * num_items + targets[1])
    num_targets = torch.bincount(keys // num_items, minlength=num_rows)
    rows = num_targets.nonzero().view(-1)
    num_targets = num_targets[rows]
    position = torch.full((num_rows,), -1, dtype=torch.long, device=device)
    position[rows] = torch.arange(rows.numel(), device=device)

    # Only the evaluated rows are ranked; the caller's scores are never modified.
    scores = scores.detach()
    if rows.numel() < num_rows:
        scores = scores[rows]  # a copy
    elif exclude is not None:
        scores = scores.clone()
    relevant = torch.zeros(scores.shape, dtype=torch.bool, device=device)
    relevant[position[keys // num_items], keys % num_items] = True
    if exclude is not None:
        ex_rows = position[exclude[0]]
        keep = ex_rows >= 0
        ex_rows, ex_items = ex_rows[keep], exclude[1][keep]
        scores[ex_rows, ex_items] = float("-inf")
        relevant[ex_rows, ex_items] = False  # an excluded target cannot be hit

    max_k = max(ks)
    top = scores.topk(max_k, dim=1).indices
    dtype = torch.float32 if device.type in NO_FLOAT64_DEVICES else torch.float64
    hits = relevant.gather(1, top).to(dtype)  # h_r, shape (R', max_k)

    ranks = torch.arange(1, max_k + 1, dtype=dtype, device=device)
    discount = 1.0 / torch.log2(ranks + 1.0)
    cum_hits = hits.cumsum(dim=1)
    dcg = (hits * discount).cumsum(dim=1)
    ideal_dcg = discount.cumsum(dim=0)
    average_precision = (hits * cum_hits / ranks).cumsum(dim=1)
    num_targets_f = num_targets.to(dtype)

    names: list[str] = []
    columns: list[Tensor] = []
    for k in ks:
        col = k - 1
        n_k = num_targets.clamp(max=k)
        values = (
            cum_hits[:, col] / num_targets_f,  # recall
            dcg[:, col] / ideal_dcg[n_k - 1],  # ndcg
            cum_hits[:, col] / k,  # precision
            average_precision[:, col] / n_k.to(dtype),  # map
            (cum_hits[:, col] > 0).to(dtype),  # hit
        )
        names.extend(f"{name}@{k}" for name in METRIC_NAMES)
        columns.extend(values)

    per_row = torch.stack(columns, dim=1)
    reduced = per_row.sum(dim=0) if reduction == "sum" else per_row.mean(dim=0)
    out: dict[str, float] = dict(zip(names, reduced.tolist()))
    out[NUM_ROWS_KEY] = int(rows.numel())
    return out


def _check_scores(scores: Tensor) -> None:
    check_tensor(scores, "'scores'")
    if not scores.is_floating_point():
        raise TypeError(f"'scores' must be a floating-point tensor (got dtype {scores.dtype})")
    if scores.dim() != 2:
        raise ValueError(
            f"'scores' must be a 2-dimensional tensor [num_rows, num_items] "
            f"(got shape {tuple(scores.shape)})"
        )
    if scores.size(1) == 0:
        raise ValueError("'scores' has no columns (num_items must be >= 1)")
    # A sum is a cheaper first screen: it is NaN if any score is (or if +inf meets -inf).
    if bool(torch.isnan(scores.detach().sum())) and bool(torch.isnan(scores).any()):
        raise ValueError("'scores' contains NaN values")


def _check_ks(ks: Union[int, Sequence[int]], num_items: int) -> tuple[int, ...]:
    ks_tuple = (ks,) if isinstance(ks, int) else tuple(ks)
    if len(ks_tuple) == 0:
        raise ValueError("'ks' must contain at least one cut-off")
    for k in ks_tuple:
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"'ks' must contain integers (got {k!r} of type {type(k).__name__})")
        if k <= 0:
            raise ValueError(f"'ks' must contain cut-offs >= 1 (got {k})")
        if k > num_items:
            raise ValueError(
                f"'ks' contains the cut-off {k}, which is larger than the number of items "
                f"({num_items}, the number of columns of 'scores')"
            )
    return tuple(dict.fromkeys(ks_tuple))  # drop duplicates, keep order


def _check_pairs(pairs: Tensor, name: str, num_rows: int, num_items: int) -> Tensor:
    check_tensor(pairs, f"'{name}'")
    if pairs.dtype != torch.long:
        raise TypeError(f"'{name}' must be a long tensor (got dtype {pairs.dtype})")
    if pairs.dim() != 2 or pairs.size(0) != 2:
        raise ValueError(
            f"'{name}' must have shape (2, E) holding (row, item) pairs "
            f"(got shape {tuple(pairs.shape)})"
        )
    for axis, what, bound in ((0, "row", num_rows), (1, "item", num_items)):
        low_high = out_of_range(pairs[axis], bound)
        if low_high is not None:
            bad = low_high[0] if low_high[0] < 0 else low_high[1]
            raise ValueError(
                f"'{name}' has {what} ids out of range [0, {bound}) (found {bad}); "
                f"'scores' has {num_rows} rows and {num_items} items"
            )
    return pairs
