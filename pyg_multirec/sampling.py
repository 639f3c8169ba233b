"""Mini-batches of BPR triples with negatives drawn among each user's unobserved items."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Optional

import torch
from torch import Tensor

from pyg_multirec._checks import check_int, out_of_range

#: Rejection rounds before the remaining collisions are drawn exactly (see
#: :func:`sample_negatives`). With a typical density of 1 %, one round leaves ~1 % of the
#: draws to redo and a handful of rounds leave none.
MAX_REJECTION_ROUNDS = 10


#: How :class:`BPRSampler` draws the positive pairs of an epoch.
PAIR_SAMPLING = ("edges", "users")


def interaction_keys(edge_index: Tensor, num_items: int) -> Tensor:
    r"""Encodes :obj:`(user, item)` pairs as the sorted, duplicate-free keys
    :math:`u \cdot I + i` that :func:`sample_negatives` searches.

    Args:
        edge_index (torch.Tensor): long user ids (row 0) and item ids (row 1).
        num_items (int): the number of items :math:`I`.

    Shapes:
        - **input:** edge indices :math:`(2, E)`
        - **output:** keys :math:`(E')`, :math:`E' \le E`, sorted ascending
    """
    return torch.unique(edge_index[0] * num_items + edge_index[1])


def sample_negatives(
    users: Tensor,
    keys: Tensor,
    num_items: int,
    num_negatives: int = 1,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Samples, for each user, items uniformly among the items the user has not
    interacted with.

    Vectorised rejection sampling: draw items uniformly from :math:`\{0, \dots, I-1\}`,
    find the draws that collide with an observed pair (membership of the key
    :math:`u \cdot I + i` in the sorted :obj:`keys`, by :func:`torch.searchsorted`) and redraw
    only those, for at most :obj:`MAX_REJECTION_ROUNDS` rounds. Draws that still collide
    (users who have seen almost every item) are then drawn exactly: a uniform rank
    :math:`r` among the :math:`I - d_u` free items is mapped to the :math:`r`-th free item by
    a vectorised bisection. Either way every returned item is uniform over the free items.

    Args:
        users (torch.Tensor): long user ids.
        keys (torch.Tensor): the observed pairs, as returned by :func:`interaction_keys`
            (sorted, on the same device as :obj:`users`).
        num_items (int): the number of items :math:`I`.
        num_negatives (int, optional): negatives per user. (default: :obj:`1`)
        generator (torch.Generator, optional): source of randomness, on the device of
            :obj:`users`. (default: :obj:`None`, the global generator)

    Raises:
        ValueError: if a user in :obj:`users` has interacted with every item.

    Shapes:
        - **input:** users :math:`(B)`, keys :math:`(E')`
        - **output:** negative items :math:`(B)`, or :math:`(B, K)` if
          :obj:`num_negatives` :math:`K > 1`
    """
    if not isinstance(users, Tensor) or users.dtype != torch.long or users.dim() != 1:
        raise TypeError(f"'users' must be a 1-dimensional long tensor (got {_describe(users)})")
    if not isinstance(keys, Tensor) or keys.dtype != torch.long or keys.dim() != 1:
        raise TypeError(f"'keys' must be a 1-dimensional long tensor (got {_describe(keys)})")
    num_items = _check_count(num_items, "num_items")
    num_negatives = _check_count(num_negatives, "num_negatives")
    if users.numel() > 0 and int(users.min()) < 0:
        raise ValueError(f"'users' contains negative ids (found {int(users.min())})")

    flat_users = users.repeat_interleave(num_negatives)
    shape = (users.numel(), num_negatives)
    neg = torch.randint(num_items, flat_users.shape, generator=generator, device=users.device)
    todo = torch.arange(flat_users.numel(), device=users.device)
    for _ in range(MAX_REJECTION_ROUNDS):
        todo = todo[_is_member(flat_users[todo] * num_items + neg[todo], keys)]
        if todo.numel() == 0:
            break
        neg[todo] = torch.randint(num_items, todo.shape, generator=generator, device=users.device)
    else:
        todo = todo[_is_member(flat_users[todo] * num_items + neg[todo], keys)]
        if todo.numel() > 0:
            neg[todo] = _sample_free_items(flat_users[todo], keys, num_items, generator)

    return neg.view(shape) if num_negatives > 1 else neg


class BPRSampler:
    r"""Iterates over the training interactions in shuffled mini-batches of BPR triples
    :math:`(u, i, j)`: an observed pair :math:`(u, i)` and an item :math:`j` drawn
    uniformly among the items :math:`u` has not interacted with in :obj:`edge_index`
    (see :func:`sample_negatives`), as in the `"BPR: Bayesian Personalized Ranking from
    Implicit Feedback" <https://arxiv.org/abs/1205.2618>`_ paper and the MMRec trainer.

    One pass of :meth:`__iter__` is one epoch over all edges; its negatives are drawn at
    its start, in one vectorised call (:math:`E \cdot K` ids held for the epoch). With
    :obj:`pairs="users"` an epoch is instead :math:`E` draws of a user, uniform among the
    users with a training pair, each with one of that user's pairs drawn uniformly (with
    replacement): every user weighs the same, whatever their number of interactions, as in
    the sampler of MICRO's official code. Epoch
    :math:`e` (counted by the sampler from :obj:`0`, or set by :meth:`set_epoch`) draws its
    permutation and its negatives from a :class:`torch.Generator` seeded with
    :obj:`seed + e`, so epochs differ but a run is reproducible.

    Args:
        edge_index (torch.Tensor): long training pairs, user ids in row 0, item ids in
            row 1. Duplicate pairs are visited as often as they appear.
        num_users (int): the number of users :math:`U`.
        num_items (int): the number of items :math:`I`.
        batch_size (int): triples per batch (the last batch may be smaller).
        num_negatives (int, optional): negatives per positive pair. (default: :obj:`1`)
        shuffle (bool, optional): visit the edges in a random order. (default: :obj:`True`)
        seed (int, optional): base seed of the per-epoch generators. (default: :obj:`0`)
        negative_items (torch.Tensor, optional): a 1-D integer tensor of item ids; when
            given, negatives are drawn uniformly among these items only (still excluding
            the user's observed items; duplicate ids count once). Every user must have at
            least one unobserved item in the set. (default: :obj:`None`, all items)
        pairs (str, optional): :obj:`"edges"` (a shuffled pass over the training pairs)
            or :obj:`"users"` (uniform users, then a uniform pair of the user; see
            above; needs :obj:`shuffle=True`). (default: :obj:`"edges"`)

    Shapes:
        - **input:** edge indices :math:`(2, E)`
        - **output (per batch):** users :math:`(B)`, positive items :math:`(B)`, negative
          items :math:`(B)`, or :math:`(B, K)` if :obj:`num_negatives` :math:`K > 1`
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_users: int,
        num_items: int,
        batch_size: int,
        num_negatives: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        negative_items: Optional[Tensor] = None,
        pairs: str = "edges",
    ) -> None:
        if pairs not in PAIR_SAMPLING:
            raise ValueError(f"'pairs' must be one of {PAIR_SAMPLING} (got {pairs!r})")
        if pairs == "users" and not shuffle:
            raise ValueError("shuffle=False keeps the edge order, which pairs='users' does not "
                             "use: pass shuffle=True (the default) or pairs='edges'")
        self.num_users = _check_count(num_users, "num_users")
        self.num_items = _check_count(num_items, "num_items")
        self.batch_size = _check_count(batch_size, "batch_size")
        self.num_negatives = _check_count(num_negatives, "num_negatives")
        check_int(seed, "'seed'")
        _check_edge_index(edge_index, self.num_users, self.num_items)

        self.users = edge_index[0].contiguous()
        self.items = edge_index[1].contiguous()
        self.keys = interaction_keys(edge_index, self.num_items)
        degree = torch.bincount(self.keys // self.num_items, minlength=self.num_users)
        full = (degree >= self.num_items).nonzero().view(-1)
        if full.numel() > 0:
            raise ValueError(
                f"'edge_index': user {int(full[0])} has interacted with all {self.num_items} "
                f"items, so no negative item can be sampled for it"
            )
        self.shuffle = bool(shuffle)
        self.pairs = pairs
        if pairs == "users":  # the pairs sorted by user, and each user's first position
            self.by_user = torch.argsort(self.users, stable=True)
            self.user_degree = torch.bincount(self.users, minlength=self.num_users)
            self.user_start = torch.cumsum(self.user_degree, 0) - self.user_degree
            self.active_users = self.user_degree.nonzero().view(-1)
        self.seed = seed
        self.epoch = 0
        self.negative_items: Optional[Tensor] = None
        if negative_items is not None:
            self._restrict_negatives(negative_items, edge_index)

    def _restrict_negatives(self, negative_items: Tensor, edge_index: Tensor) -> None:
        # Negatives are drawn as positions 0..C-1 in the sorted candidate list: the keys
        # then encode (user, position) for the observed pairs whose item is a candidate, so
        # `sample_negatives` draws uniformly among each user's unobserved candidates.
        candidates = check_item_ids(negative_items, self.num_items, "negative_items")
        candidates = torch.unique(candidates.to(self.items.device))
        position = torch.searchsorted(candidates, edge_index[1]).clamp_(max=candidates.numel() - 1)
        is_candidate = candidates[position] == edge_index[1]
        observed = torch.stack([edge_index[0][is_candidate], position[is_candidate]])
        keys = interaction_keys(observed, candidates.numel())
        degree = torch.bincount(keys // candidates.numel(), minlength=self.num_users)
        full = (degree >= candidates.numel()).nonzero().view(-1)
        if full.numel() > 0:
            raise ValueError(
                f"'negative_items': user {int(full[0])} has interacted with all "
                f"{candidates.numel()} items of the set, so no negative item can be sampled "
                f"for it"
            )
        self.negative_items, self.negative_keys = candidates, keys

    @property
    def num_edges(self) -> int:
        return self.users.numel()

    def set_epoch(self, epoch: int) -> None:
        """Makes the next :meth:`__iter__` produce epoch :obj:`epoch`."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.num_edges / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        device = self.users.device
        generator = torch.Generator(device=device)
        generator.manual_seed(self.seed + self.epoch)
        self.epoch += 1
        if self.pairs == "users":
            order = self._user_uniform_pairs(generator)
        elif self.shuffle:
            order = torch.randperm(self.num_edges, generator=generator, device=device)
        else:
            order = torch.arange(self.num_edges, device=device)
        users, pos_items = self.users[order], self.items[order]
        # One vectorised draw for the whole epoch is much cheaper than one per batch.
        if self.negative_items is None:
            neg_items = sample_negatives(
                users, self.keys, self.num_items, self.num_negatives, generator=generator
            )
        else:
            positions = sample_negatives(
                users,
                self.negative_keys,
                self.negative_items.numel(),
                self.num_negatives,
                generator=generator,
            )
            neg_items = self.negative_items[positions]
        for start in range(0, self.num_edges, self.batch_size):
            stop = start + self.batch_size
            yield users[start:stop], pos_items[start:stop], neg_items[start:stop]

    def _user_uniform_pairs(self, generator: torch.Generator) -> Tensor:
        """Positions of :attr:`num_edges` pairs: a uniform user with a pair, then one of its
        pairs uniformly."""
        device = self.users.device
        pick = torch.randint(
            self.active_users.numel(), (self.num_edges,), generator=generator, device=device
        )
        user = self.active_users[pick]
        uniform = torch.rand(self.num_edges, generator=generator, device=device,
                             dtype=torch.float64)  # fmt: skip
        degree = self.user_degree[user]
        offset = torch.minimum((uniform * degree).long(), degree - 1)
        return self.by_user[self.user_start[user] + offset]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_edges={self.num_edges}, num_users={self.num_users}, "
            f"num_items={self.num_items}, batch_size={self.batch_size}, "
            f"num_negatives={self.num_negatives}, shuffle={self.shuffle}, seed={self.seed}"
            + ("" if self.pairs == "edges" else f", pairs={self.pairs!r}")
            + (
                ""
                if self.negative_items is None
                else f", negative_items={self.negative_items.numel()} ids"
            )
            + ")"
        )


def _is_member(queries: Tensor, keys: Tensor) -> Tensor:
    """Whether each query occurs in the sorted ``keys``."""
    if keys.numel() == 0:
        return torch.zeros_like(queries, dtype=torch.bool)
    pos = torch.searchsorted(keys, queries).clamp_(max=keys.numel() - 1)
    return keys[pos] == queries


def _sample_free_items(
    users: Tensor, keys: Tensor, num_items: int, generator: Optional[torch.Generator]
) -> Tensor:
    """Exact uniform draw among each user's free items by inverting the count of free items.

    For user ``u`` with observed items ``t``, ``free(x) = x + 1 - |{t <= x}|`` counts the free
    items in ``[0, x]``; the ``r``-th free item (0-based) is the smallest ``x`` with
    ``free(x) >= r + 1``, found by bisection over ``x`` for all draws at once.
    """
    base = users * num_items
    start = torch.searchsorted(keys, base)
    degree = torch.searchsorted(keys, base + num_items) - start
    num_free = num_items - degree
    if bool((num_free <= 0).any()):
        user = int(users[num_free <= 0][0])
        raise ValueError(
            f"user {user} has interacted with all {num_items} items, so no negative item "
            f"can be sampled for it"
        )
    uniform = torch.rand(users.shape, generator=generator, device=users.device, dtype=torch.float64)
    rank = (uniform * num_free).long().clamp_(max=num_free - 1)
    low = torch.zeros_like(users)
    high = torch.full_like(users, num_items - 1)
    while bool((low < high).any()):
        mid = (low + high) // 2
        num_seen = torch.searchsorted(keys, base + mid, right=True) - start
        enough = mid + 1 - num_seen >= rank + 1
        high = torch.where(enough, mid, high)
        low = torch.where(enough, low, mid + 1)
    return low


def check_item_ids(items: Tensor, num_items: int, name: str) -> Tensor:
    """Checks that ``items`` is a non-empty 1-D integer tensor of ids in ``[0, num_items)``
    and returns it as a long tensor."""
    if not isinstance(items, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor of item ids (got {_describe(items)})")
    if items.is_floating_point() or items.is_complex() or items.dtype == torch.bool:
        raise TypeError(f"'{name}' must hold integer item ids (got {_describe(items)})")
    if items.dim() != 1:
        raise ValueError(f"'{name}' must be 1-dimensional (got shape {tuple(items.shape)})")
    if items.numel() == 0:
        raise ValueError(f"'{name}' is empty: it must hold at least one item id")
    low, high = int(items.min()), int(items.max())
    if low < 0 or high >= num_items:
        raise ValueError(
            f"'{name}' has item ids out of range [0, {num_items}) "
            f"(found {low if low < 0 else high})"
        )
    return items.long()


def _check_count(value: int, name: str) -> int:
    return check_int(value, f"'{name}'", minimum=1)


def _check_edge_index(edge_index: Tensor, num_users: int, num_items: int) -> None:
    if not isinstance(edge_index, Tensor) or edge_index.dtype != torch.long:
        raise TypeError(f"'edge_index' must be a long tensor (got {_describe(edge_index)})")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(
            f"'edge_index' must have shape (2, E) holding (user, item) pairs "
            f"(got shape {tuple(edge_index.shape)})"
        )
    if edge_index.size(1) == 0:
        raise ValueError("'edge_index' is empty: there are no training interactions")
    for axis, what, bound in ((0, "user", num_users), (1, "item", num_items)):
        low_high = out_of_range(edge_index[axis], bound)
        if low_high is not None:
            low, high = low_high
            raise ValueError(
                f"'edge_index' has {what} ids out of range [0, {bound}) "
                f"(found {low if low < 0 else high})"
            )


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"dtype {x.dtype}, shape {tuple(x.shape)}"
    return type(x).__name__
