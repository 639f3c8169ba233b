"""Full-ranking evaluation of a recommender on a validation or test split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor
from torch.nn import Module
from torch_geometric.data import HeteroData

from pyg_multirec._checks import check_choice, is_int, out_of_range
from pyg_multirec.metrics import (
    DEFAULT_KS,
    NUM_ROWS_KEY,
    _check_ks,
    _ranking_metrics,
    beyond_accuracy_metrics,
    coverage_and_gini,
    item_counts,
    item_popularity,
)

#: Splits that :func:`evaluate` ranks against; the training split is always masked.
EVAL_SPLITS = ("valid", "test")
TRAIN_SPLIT = "train"
DEFAULT_EVAL_BATCH_SIZE = 1024


def build_user_item_csr(edge_index: Tensor, num_users: int) -> tuple[Tensor, Tensor]:
    r"""Groups :obj:`(user, item)` pairs by user in compressed sparse row form.

    The items of user :math:`u` are :obj:`items[ptr[u]:ptr[u + 1]]` (in their input order),
    and the items of the users :math:`a, \dots, b - 1` form the single slice
    :obj:`items[ptr[a]:ptr[b]]`.

    Args:
        edge_index (torch.Tensor): long user ids (row 0) and item ids (row 1).
        num_users (int): the number of users :math:`U`.

    Shapes:
        - **input:** edge indices :math:`(2, E)`
        - **output:** pointers :math:`(U + 1)`, items :math:`(E)`
    """
    users, items = edge_index[0], edge_index[1]
    order = torch.argsort(users, stable=True)
    ptr = torch.cat([users.new_zeros(1), torch.bincount(users, minlength=num_users).cumsum(0)])
    return ptr, items[order]


def evaluate(
    model: Module,
    data: HeteroData,
    split: str = "valid",
    ks: Union[int, Sequence[int]] = DEFAULT_KS,
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    mask_valid: bool = False,
    device: Optional[Union[str, torch.device]] = None,
    beyond_accuracy: bool = True,
) -> dict[str, float]:
    r"""Evaluates :obj:`model` by full ranking over all items, the MMRec protocol.

    The representations :obj:`user_emb, item_emb = model.embed()` are computed once, in
    evaluation mode and without gradients (the previous training mode is restored
    afterwards). Then, for batches of the users that have at least one interaction in
    :obj:`split`, :obj:`model.score(user_emb[batch], item_emb)` ranks every item, the
    user's training items are masked (never recommended), and the metrics of
    :func:`~pyg_multirec.metrics.ranking_metrics` are summed. Only one batch of scores is
    held at a time. The result averages over all evaluated users, so it does not depend
    on :obj:`batch_size`.

    With :obj:`beyond_accuracy` (the default), the top-:math:`K` lists are also described
    by :func:`~pyg_multirec.metrics.beyond_accuracy_metrics`, with the training interaction
    counts as item popularity: the per-user ones (:obj:`"avg_pop@K"`, :obj:`"novelty@K"`)
    are averaged like the ranking metrics, and the catalogue-wide ones
    (:obj:`"coverage@K"`, :obj:`"gini@K"`) come from the item counts of the top-:math:`K`
    lists accumulated over all user batches.

    Args:
        model (torch.nn.Module): a model with :obj:`embed() -> (user_emb, item_emb)` and
            :obj:`score(user_emb, item_emb) -> scores` (see
            :class:`~pyg_multirec.models.Recommender`).
        data (torch_geometric.data.HeteroData): the interactions, with
            :obj:`("user", split, "item")` and :obj:`("user", "train", "item")` edges.
        split (str, optional): :obj:`"valid"` or :obj:`"test"`. (default: :obj:`"valid"`)
        ks (int or Sequence[int], optional): the cut-offs. (default: :obj:`(10, 20)`)
        batch_size (int, optional): users scored at once. (default: :obj:`1024`)
        mask_valid (bool, optional): when evaluating :obj:`"test"`, also mask the
            validation items (MMRec masks only the training items, hence the default).
            (default: :obj:`False`)
        device (str or torch.device, optional): where the scores are computed; by default
            the device of the embeddings returned by :obj:`model.embed()`.
            (default: :obj:`None`)

    Returns:
        dict: the averaged metrics (e.g. :obj:`"recall@20"`) and :obj:`"num_rows"`, the
        number of evaluated users.
    """
    check_choice(split, "'split'", EVAL_SPLITS)
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"'batch_size' must be an int >= 1 (got {batch_size!r})")
    num_users, num_items = data["user"].num_nodes, data["item"].num_nodes
    targets = _split_edges(data, split)
    if targets.size(1) == 0:
        raise ValueError(f"split {split!r} has no interactions to evaluate")
    masked = [_split_edges(data, TRAIN_SPLIT)]
    if mask_valid and split == "test":
        masked.append(_split_edges(data, "valid"))
    masked_edges = torch.cat(masked, dim=1)
    popularity = (
        item_popularity(_split_edges(data, TRAIN_SPLIT), num_items) if beyond_accuracy else None
    )

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            user_emb, item_emb = model.embed()
            if device is not None:
                user_emb, item_emb = user_emb.to(device), item_emb.to(device)
            if user_emb.size(0) != num_users:
                raise ValueError(
                    f"model.embed() returned {user_emb.size(0)} user rows, but the data has "
                    f"{num_users} users"
                )
            sums = _evaluate_batches(
                model,
                user_emb,
                item_emb,
                targets,
                masked_edges,
                num_users,
                num_items,
                ks,
                batch_size,
                popularity,
            )
    finally:
        model.train(was_training)
    return sums


def _evaluate_batches(
    model: Module,
    user_emb: Tensor,
    item_emb: Tensor,
    targets: Tensor,
    masked_edges: Tensor,
    num_users: int,
    num_items: int,
    ks: Union[int, Sequence[int]],
    batch_size: int,
    popularity: Optional[Tensor] = None,
) -> dict[str, float]:
    device = user_emb.device
    ks = _check_ks(ks, num_items)
    if popularity is not None:
        popularity = popularity.to(device)
    counts = {k: torch.zeros(num_items, dtype=torch.long, device=device) for k in ks}
    targets, masked_edges = targets.to(device), masked_edges.to(device)
    target_ptr, target_items = build_user_item_csr(targets, num_users)
    mask_ptr, mask_items = build_user_item_csr(masked_edges, num_users)
    mask_users = torch.repeat_interleave(  # the user of each entry of mask_items
        torch.arange(num_users, device=device), mask_ptr[1:] - mask_ptr[:-1]
    )

    eval_users = (target_ptr[1:] > target_ptr[:-1]).nonzero().view(-1)  # sorted ascending
    num_eval = eval_users.numel()
    # row_of[u]: position of u among the evaluated users (-1 for the others).
    row_of = torch.full((num_users,), -1, dtype=torch.long, device=device)
    row_of[eval_users] = torch.arange(num_eval, device=device)
    # Per-user pointers, gathered once so that every batch needs a single host sync.
    bounds = torch.stack(
        [
            target_ptr[eval_users],
            target_ptr[eval_users + 1],
            mask_ptr[eval_users],
            mask_ptr[eval_users + 1],
        ]
    ).tolist()

    sums: dict[str, float] = {}
    for start in range(0, num_eval, batch_size):
        stop = min(start + batch_size, num_eval)
        batch = eval_users[start:stop]
        scores = model.score(user_emb[batch], item_emb)
        if scores.dim() != 2 or scores.shape != (stop - start, num_items):
            raise ValueError(
                f"model.score() must return scores of shape ({stop - start}, {num_items}) for "
                f"a batch of {stop - start} users (got {tuple(scores.shape)})"
            )
        # Eval users are sorted, so a batch's edges are one contiguous CSR slice.
        t_lo, t_hi = bounds[0][start], bounds[1][stop - 1]
        t_users = torch.repeat_interleave(
            torch.arange(stop - start, device=device),
            target_ptr[batch + 1] - target_ptr[batch],
        )
        batch_targets = torch.stack([t_users, target_items[t_lo:t_hi]])
        # The masked slice may hold users without targets between batch users: drop them.
        m_lo, m_hi = bounds[2][start], bounds[3][stop - 1]
        m_rows = row_of[mask_users[m_lo:m_hi]] - start
        keep = m_rows >= 0
        batch_exclude = torch.stack([m_rows[keep], mask_items[m_lo:m_hi][keep]])

        batch_sums, top = _ranking_metrics(scores, batch_targets, ks, batch_exclude, "sum")
        if popularity is not None:
            batch_sums.update(
                beyond_accuracy_metrics(top, popularity, num_users, ks, reduction="sum")
            )
            for k in ks:  # catalogue-wide metrics need the counts of all batches
                counts[k] += item_counts(top, k, num_items)
        for key, value in batch_sums.items():
            sums[key] = sums.get(key, 0.0) + value

    total = sums.pop(NUM_ROWS_KEY)
    out = {key: value / total for key, value in sums.items()}
    if popularity is not None:
        for k in ks:
            out[f"coverage@{k}"], out[f"gini@{k}"] = coverage_and_gini(counts[k])
    out[NUM_ROWS_KEY] = int(total)
    return out


def _split_edges(data: HeteroData, split: str) -> Tensor:
    edge_type = ("user", split, "item")
    if edge_type not in data.edge_types:
        raise ValueError(f"'data' has no {edge_type} edges (edge types: {data.edge_types})")
    edge_index = data[edge_type].edge_index
    if edge_index.dtype != torch.long or edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(
            f"data[{edge_type}].edge_index must be a long tensor of shape (2, E) "
            f"(got dtype {edge_index.dtype}, shape {tuple(edge_index.shape)})"
        )
    counts = (data["user"].num_nodes, data["item"].num_nodes)
    for axis, (what, bound) in enumerate(zip(("user", "item"), counts)):
        if out_of_range(edge_index[axis], bound) is not None:
            raise ValueError(
                f"data[{edge_type}].edge_index has {what} ids out of range [0, {bound})"
            )
    return edge_index
