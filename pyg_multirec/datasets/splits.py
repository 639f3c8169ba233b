"""Splitting interactions: the per-user 8:1:1 split of MMRec (used by the MMRec writer and
the synthetic generator) and the item cold-start protocol of MICRO."""

from __future__ import annotations

import copy
import math
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_multirec._checks import check_int, check_number
from pyg_multirec.datasets.layout import TEST_LABEL, TRAIN_LABEL, VALID_LABEL
from pyg_multirec.datasets.validation import (
    ITEM,
    SPLITS,
    USER,
    split_edge_type,
    validate_data,
)

#: Share of each user's interactions that goes to validation, and as much to test (8:1:1).
HOLDOUT_FRACTION = 0.1
#: Users with fewer interactions than this keep all of them in the training split.
MIN_SPLIT_INTERACTIONS = 3
# One cold item for validation and one for test at the very least, plus one warm item.
MIN_COLD_ITEMS = 2
MIN_WARM_ITEMS = 1


def holdout_labels(users: Tensor, num_users: int, order: Optional[Tensor] = None) -> Tensor:
    r"""The per-user 8:1:1 split of MMRec: the ``x_label`` (0 train, 1 valid, 2 test) of
    every interaction.

    A user with :math:`n \ge 3` interactions puts the last
    :math:`n_{test} = \max(1, \mathrm{round}(0.1\,n))` of them (in sequence order) into
    test, the :math:`n_{valid} = n_{test}` before those into validation and the rest into
    train (``round`` halves to even, as Python's); a user with fewer keeps all in train.

    Args:
        users (Tensor): long ``[E]``, the user of each interaction, in ``[0, num_users)``.
        num_users (int): number of users.
        order (Tensor, optional): a permutation of ``0..E-1`` that lists each user's
            interactions in sequence order (e.g. by time, or at random); :obj:`None`: the
            input order. (default: :obj:`None`)

    Returns:
        Tensor: long ``[E]``, the label of each interaction (input order).
    """
    counts = torch.bincount(users, minlength=num_users)
    holdout = torch.round(HOLDOUT_FRACTION * counts.double()).clamp(min=1).long()
    holdout = torch.where(counts >= MIN_SPLIT_INTERACTIONS, holdout, 0)
    num_train = counts - 2 * holdout  # n_valid = n_test = holdout
    if order is None:
        order = torch.arange(users.numel())
    order = order[torch.sort(users[order], stable=True).indices]  # by user, sequence kept
    start = torch.cumsum(counts, 0) - counts
    position = torch.empty_like(users)
    position[order] = torch.arange(users.numel()) - start[users[order]]
    labels = torch.full_like(users, TEST_LABEL)
    labels[position < (num_train + holdout)[users]] = VALID_LABEL
    labels[position < num_train[users]] = TRAIN_LABEL
    return labels


def cold_start_split(data: HeteroData, cold_ratio: float = 0.2, seed: int = 0) -> HeteroData:
    r"""The item cold-start split of MICRO (`"Latent Structure Mining with Contrastive
    Modality Fusion for Multimedia Recommendation"`, Zhang et al.,
    Sec. 4.1.3): a random :obj:`cold_ratio` of the items lose all their training
    interactions, so they can only be recommended through their content features.

    With :math:`\mathcal{C}` the ``round(cold_ratio * num_items)`` cold items (drawn with
    :obj:`seed`) split at random into halves :math:`\mathcal{C}_{valid}` (``|C| // 2`` items)
    and :math:`\mathcal{C}_{test}` (the rest), and :math:`\mathcal{R}` the union of the
    train, valid and test interactions of :obj:`data` (duplicate pairs merged):

    * train = the pairs of :math:`\mathcal{R}` whose item is warm (not in :math:`\mathcal{C}`);
    * valid = the pairs whose item is in :math:`\mathcal{C}_{valid}`;
    * test = the pairs whose item is in :math:`\mathcal{C}_{test}`.

    Users left without any training interaction stay as nodes (ids do not change) but their
    valid / test pairs are dropped, since nothing is known about them. Each split's
    ``edge_index`` is sorted by user, then item; other attributes of the input edge stores
    (e.g. ratings) are not carried over.

    Returns a new :class:`~torch_geometric.data.HeteroData` (the input is not modified; node
    features are shared, not copied) with the three split edge types replaced and

    * ``data['item'].cold_mask``: bool ``[num_items]``, :obj:`True` for the cold items;
    * ``data.cold_start_info``: a dict with ``num_cold_items``, ``num_valid_items``,
      ``num_test_items``, ``num_train``, ``num_valid``, ``num_test`` (interactions per
      split), ``num_users_without_train``, ``num_dropped_valid`` and ``num_dropped_test``
      (pairs dropped because their user has no training interaction), ``cold_ratio`` and
      ``seed``.

    The result passes :func:`~pyg_multirec.datasets.validate_data` with
    ``require_train_per_user=False``.

    Args:
        data (HeteroData): a dataset following the data contract.
        cold_ratio (float, optional): fraction of items made cold, in :math:`(0, 1)`.
            (default: :obj:`0.2`)
        seed (int, optional): random seed of the choice of cold items. (default: :obj:`0`)

    Raises:
        ValueError: if :obj:`cold_ratio` is outside :math:`(0, 1)`, if there are too few
            items for two cold and one warm item, or if a resulting split is empty.
    """
    if not (math.isfinite(check_number(cold_ratio, "'cold_ratio'")) and 0 < cold_ratio < 1):
        raise ValueError(f"'cold_ratio' must lie in (0, 1) (got {cold_ratio})")
    check_int(seed, "'seed'")
    validate_data(data, require_train_per_user=False, allow_no_modality=True)
    num_users, num_items = int(data[USER].num_nodes), int(data[ITEM].num_nodes)
    num_cold = round(cold_ratio * num_items)
    if num_cold < MIN_COLD_ITEMS or num_items - num_cold < MIN_WARM_ITEMS:
        raise ValueError(
            f"cold_ratio={cold_ratio} of {num_items} items gives {num_cold} cold and "
            f"{num_items - num_cold} warm items; need at least {MIN_COLD_ITEMS} cold "
            f"(one for validation, one for test) and {MIN_WARM_ITEMS} warm (too few items)"
        )

    gen = torch.Generator().manual_seed(seed)
    cold = torch.randperm(num_items, generator=gen)[:num_cold]
    num_valid_items = num_cold // 2
    # Per item: 0 warm (train), 1 cold for validation, 2 cold for test.
    item_split = torch.zeros(num_items, dtype=torch.long)
    item_split[cold[:num_valid_items]] = 1
    item_split[cold[num_valid_items:]] = 2

    pairs = torch.cat([data[split_edge_type(s)].edge_index for s in SPLITS], dim=1)
    pairs = _unique_pairs(pairs, num_items)
    pair_split = item_split[pairs[1]]
    train = pairs[:, pair_split == 0]
    has_train = torch.zeros(num_users, dtype=torch.bool)
    has_train[train[0]] = True

    out = copy.copy(data)
    for s in SPLITS:
        del out[split_edge_type(s)]
    info: dict[str, float | int] = {
        "cold_ratio": float(cold_ratio),
        "seed": seed,
        "num_cold_items": num_cold,
        "num_valid_items": num_valid_items,
        "num_test_items": num_cold - num_valid_items,
        "num_users_without_train": int((~has_train).sum()),
    }
    out[split_edge_type("train")].edge_index = train
    info["num_train"] = train.size(1)
    for label, s in ((1, "valid"), (2, "test")):
        edges = pairs[:, pair_split == label]
        kept = edges[:, has_train[edges[0]]]
        out[split_edge_type(s)].edge_index = kept
        info[f"num_{s}"] = kept.size(1)
        info[f"num_dropped_{s}"] = edges.size(1) - kept.size(1)
        if kept.size(1) == 0:
            why = (f"its {info[f'num_{s}_items']} cold items have no interaction"
                   if edges.size(1) == 0 else
                   f"all {edges.size(1)} interactions with its cold items belong to users "
                   f"without training interactions")
            raise ValueError(
                f"cold_start_split: the {s} split is empty ({why}); try another seed or a "
                f"larger cold_ratio"
            )
    cold_mask = item_split > 0
    out[ITEM].cold_mask = cold_mask
    out.cold_start_info = info
    validate_data(out, require_train_per_user=False, allow_no_modality=True)
    return out


def _unique_pairs(edge_index: Tensor, num_items: int) -> Tensor:
    """Distinct (user, item) columns of ``edge_index``, sorted by user then item."""
    key = torch.unique(edge_index[0] * num_items + edge_index[1])
    return torch.stack([key // num_items, key % num_items])
