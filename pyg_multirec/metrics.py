"""Top-K ranking metrics of the MMRec full-ranking protocol, and beyond-accuracy metrics
(coverage, average popularity, novelty, Gini) of the recommended top-K lists."""

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
#: Beyond-accuracy metrics of one cut-off (see :func:`beyond_accuracy_metrics`).
BEYOND_ACCURACY_NAMES = ("coverage", "avg_pop", "novelty", "gini")
#: Of those, the ones that are per-user means (additive over user batches).
PER_USER_BEYOND_ACCURACY = ("avg_pop", "novelty")


def ranking_metrics(
    scores: Tensor,
    targets: Tensor,
    ks: Union[int, Sequence[int]] = DEFAULT_KS,
    exclude: Optional[Tensor] = None,
    reduction: str = "mean",
    popularity: Optional[Tensor] = None,
    num_users: Optional[int] = None,
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
        popularity (torch.Tensor, optional): the training interaction count of every item;
            when given, the beyond-accuracy metrics of :func:`beyond_accuracy_metrics` of
            the evaluated rows' top-:math:`K` lists are added. With :obj:`reduction="sum"`
            only the per-row ones (:obj:`"avg_pop@K"`, :obj:`"novelty@K"`) are added:
            coverage and Gini are not sums over rows (:func:`~pyg_multirec.evaluation.evaluate`
            aggregates item counts over its user batches instead). (default: :obj:`None`)
        num_users (int, optional): the number of users :math:`U` of the data set, needed
            with :obj:`popularity` (novelty). (default: :obj:`None`)

    Returns:
        dict: :obj:`"recall@K"`, :obj:`"ndcg@K"`, :obj:`"precision@K"`, :obj:`"map@K"`
        and :obj:`"hit@K"` for every :math:`K` in :obj:`ks` (and the beyond-accuracy
        metrics with :obj:`popularity`), and :obj:`"num_rows"`, the number of rows with at
        least one target (an :obj:`int`).

    Shapes:
        - **input:**
          scores :math:`(R, I)`,
          targets :math:`(2, E_T)`,
          exclude :math:`(2, E_X)` *(optional)*,
          popularity :math:`(I)` *(optional)*
        - **output:** a dictionary of Python numbers
    """
    out, top = _ranking_metrics(scores, targets, ks, exclude, reduction)
    if popularity is not None:
        ks = _check_ks(ks, scores.size(1))
        out.update(beyond_accuracy_metrics(top, popularity, num_users, ks, reduction=reduction))
    return out


def _ranking_metrics(
    scores: Tensor,
    targets: Tensor,
    ks: Union[int, Sequence[int]],
    exclude: Optional[Tensor],
    reduction: str,
) -> tuple[dict[str, float], Tensor]:
    # ranking_metrics without the beyond-accuracy part; also returns the top-max(ks) item
    # ids of the evaluated rows (those with a target), shape (R', max(ks)).
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
    return out, top


def item_popularity(edge_index: Tensor, num_items: int) -> Tensor:
    r"""The popularity of every item: its number of (training) interactions.

    Args:
        edge_index (torch.Tensor): long :obj:`(user, item)` pairs.
        num_items (int): the number of items :math:`I`.

    Shapes:
        - **input:** :math:`(2, E)`
        - **output:** :math:`(I)`, long
    """
    return torch.bincount(edge_index[1], minlength=num_items)


def beyond_accuracy_metrics(
    top_items: Tensor,
    popularity: Tensor,
    num_users: Optional[int],
    ks: Union[int, Sequence[int]] = DEFAULT_KS,
    reduction: str = "mean",
) -> dict[str, float]:
    r"""Beyond-accuracy metrics of top-:math:`K` recommendation lists.

    Let :math:`L_u` be the top-:math:`K` list of row (user) :math:`u` among the :math:`R`
    rows, :math:`p_i` the popularity of item :math:`i` (its number of training
    interactions), :math:`U` the number of users of the data set and :math:`c_i` the number
    of lists that contain :math:`i`:

    .. math::
        \mathrm{Coverage@}K &= \frac{|\{i : c_i > 0\}|}{I}, \qquad
        \mathrm{AvgPop@}K = \frac{1}{R} \sum_u \frac{1}{K} \sum_{i \in L_u} p_i,

        \mathrm{Novelty@}K &= \frac{1}{R} \sum_u \frac{1}{K} \sum_{i \in L_u}
        -\log_2 \frac{\max(p_i, 1)}{U}, \qquad
        \mathrm{Gini@}K = \frac{\sum_{j=1}^{I} (2j - I - 1)\, c_{(j)}}{I \sum_j c_j},

    where :math:`c_{(1)} \le \dots \le c_{(I)}` are the counts sorted in ascending order.
    Coverage is the catalogue coverage (the share of all items recommended to at least one
    user); AvgPop is the average recommendation popularity (ARP, Yin et al., VLDB 2012);
    Novelty is the mean self-information of the recommended items (Zhou et al., PNAS 2010),
    :math:`p_i / U` being the share of users who interacted with :math:`i` (an item without
    training interactions is counted as if it had one, so that the value stays finite);
    Gini is the Gini index of the distribution of recommendations over all :math:`I` items
    (0: every item recommended equally often; :math:`(I - 1) / I`: a single item gets every
    recommendation).

    Args:
        top_items (torch.Tensor): long item ids, the top-:math:`\max(K)` list of each row in
            rank order.
        popularity (torch.Tensor): the popularity :math:`p_i` of every item, e.g.
            :func:`item_popularity` of the training interactions.
        num_users (int): the number of users :math:`U` (for novelty).
        ks (int or Sequence[int], optional): the cut-offs. (default: :obj:`(10, 20)`)
        reduction (str, optional): :obj:`"mean"` over rows; :obj:`"sum"` returns the sums
            of the per-row metrics (AvgPop, Novelty) only, for a batched evaluator.
            (default: :obj:`"mean"`)

    Returns:
        dict: :obj:`"coverage@K"`, :obj:`"avg_pop@K"`, :obj:`"novelty@K"` and
        :obj:`"gini@K"` for every :math:`K` (only the per-row two with :obj:`"sum"`).

    Shapes:
        - **input:** top_items :math:`(R, \max(K))`, popularity :math:`(I)`
        - **output:** a dictionary of Python numbers
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"'reduction' must be one of {REDUCTIONS} (got {reduction!r})")
    if not isinstance(top_items, Tensor) or top_items.dtype != torch.long or top_items.dim() != 2:
        raise ValueError("'top_items' must be a long tensor of shape (num_rows, max(ks))")
    if not isinstance(popularity, Tensor) or popularity.dim() != 1:
        raise ValueError("'popularity' must be a 1-dimensional tensor with one value per item")
    if isinstance(num_users, bool) or not isinstance(num_users, int) or num_users < 1:
        raise ValueError(f"'num_users' must be an int >= 1 (got {num_users!r})")
    num_items = popularity.numel()
    ks = _check_ks(ks, num_items)
    if max(ks) > top_items.size(1):
        raise ValueError(
            f"'top_items' holds {top_items.size(1)} items per row, fewer than max(ks)={max(ks)}"
        )
    if top_items.numel() and (int(top_items.min()) < 0 or int(top_items.max()) >= num_items):
        raise ValueError(f"'top_items' has item ids out of range [0, {num_items})")
    if bool((popularity < 0).any()):
        raise ValueError("'popularity' must be non-negative")
    device = top_items.device
    dtype = torch.float32 if device.type in NO_FLOAT64_DEVICES else torch.float64
    pop = popularity.to(device=device, dtype=dtype)
    self_information = -torch.log2(pop.clamp(min=1.0) / num_users)
    top_pop, top_info = pop[top_items], self_information[top_items]
    out: dict[str, float] = {}
    for k in ks:
        per_row = {
            "avg_pop": top_pop[:, :k].mean(dim=1),
            "novelty": top_info[:, :k].mean(dim=1),
        }
        if reduction == "mean":
            coverage, gini = coverage_and_gini(item_counts(top_items, k, num_items))
            out[f"coverage@{k}"] = coverage
        for name in PER_USER_BEYOND_ACCURACY:
            values = per_row[name]
            out[f"{name}@{k}"] = float(values.sum() if reduction == "sum" else values.mean())
        if reduction == "mean":
            out[f"gini@{k}"] = gini
    return out


def item_counts(top_items: Tensor, k: int, num_items: int) -> Tensor:
    r"""How many of the top-:math:`k` lists (the first :math:`k` columns of
    :obj:`top_items`) contain each item; shape :math:`(I)`. Counts of several batches of
    users add up, so catalogue-wide metrics (:func:`coverage_and_gini`) can be aggregated."""
    return torch.bincount(top_items[:, :k].reshape(-1), minlength=num_items)


def coverage_and_gini(counts: Tensor) -> tuple[float, float]:
    r"""Catalogue coverage and Gini index of recommendation counts :math:`c_i` (one per
    item, see :func:`beyond_accuracy_metrics` for the formulas). No recommendation at all
    gives :obj:`(0.0, 0.0)`."""
    counts = counts.detach().to("cpu", torch.float64)
    num_items = counts.numel()
    total = float(counts.sum())
    coverage = float((counts > 0).sum()) / num_items
    if total == 0:
        return coverage, 0.0
    ranks = torch.arange(1, num_items + 1, dtype=torch.float64)
    weights = 2 * ranks - num_items - 1
    gini = float((weights * counts.sort().values).sum()) / (num_items * total)
    return coverage, gini


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
