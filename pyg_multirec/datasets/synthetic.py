"""A generated multimodal recommendation dataset with planted generic / unique structure."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import Tensor
from torch_geometric.data import HeteroData, InMemoryDataset

from pyg_multirec._checks import check_finite_float, check_int
from pyg_multirec.datasets.layout import SPLIT_LABELS
from pyg_multirec.datasets.splits import holdout_labels
from pyg_multirec.datasets.validation import (
    ITEM,
    USER,
    feature_key,
    split_edge_type,
    validate_data,
)

#: The name under which :func:`~pyg_multirec.datasets.load_dataset` builds this dataset
#: (reserved: the MMRec writer refuses it as a dataset name).
SYNTHETIC = "synthetic"
DEFAULT_MODALITY_DIMS: Mapping[str, int] = MappingProxyType({"image": 64, "text": 32})
# Every user gets at least this many interactions, so that the 8:1:1 split gives each
# user one train, one valid and one test interaction.
MIN_INTERACTIONS_PER_USER = 3
# Standard deviation of the log-normal user activity weights (long-tailed user degrees).
ACTIVITY_LOG_STD = 1.0
# Upper bound on the number of user x item scores held at once while sampling.
MAX_BLOCK_ELEMENTS = 1 << 22
# With-replacement draws per row in sample_without_replacement: factor x count + extra.
OVERSAMPLE_FACTOR = 2
OVERSAMPLE_EXTRA = 8
# Keeps log(u) finite for uniform u in the Gumbel fallback.
TINY = 1e-20


def _gaussian(shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=gen)


def interactions_per_user(
    num_users: int, num_items: int, num_interactions: int, gen: torch.Generator
) -> Tensor:
    """Long-tailed per-user interaction counts, each in ``[3, num_items]``, summing exactly to
    ``num_interactions``: 3 each, the rest drawn multinomially with log-normal user weights;
    counts above ``num_items`` are capped and their excess given to the heaviest users with
    room left."""
    weights = torch.exp(ACTIVITY_LOG_STD * _gaussian((num_users,), gen))
    counts = torch.full((num_users,), MIN_INTERACTIONS_PER_USER, dtype=torch.long)
    extra = num_interactions - MIN_INTERACTIONS_PER_USER * num_users
    if extra > 0:
        draws = torch.multinomial(weights, extra, replacement=True, generator=gen)
        counts += torch.bincount(draws, minlength=num_users)
    overflow = int((counts - num_items).clamp(min=0).sum())
    counts = counts.clamp(max=num_items)
    if overflow > 0:
        order = torch.argsort(weights, descending=True)
        room = (num_items - counts)[order]
        given_before = torch.cumsum(room, 0) - room
        give = torch.minimum(room, (overflow - given_before).clamp(min=0))
        counts[order] += give
    return counts


def sample_without_replacement(logits: Tensor, counts: Tensor, gen: torch.Generator) -> Tensor:
    r"""Draws ``counts[b]`` distinct columns of row ``b`` of :obj:`logits` without replacement
    from :math:`\operatorname{softmax}(\text{logits}_b)` (successive sampling, i.e. the
    Plackett-Luce / Gumbel-top-:math:`k` distribution) and returns them concatenated row by
    row, each row's in draw order: a long tensor of ``counts.sum()`` column ids.

    Drawing i.i.d. with replacement and keeping the distinct values in order of first
    appearance gives exactly that distribution, and needs random numbers only for the draws
    (inverse CDF, up to float32 rounding of the CDF), not for every entry. Rows that do not
    reach ``counts[b]`` distinct values within ``2 * max(counts) + 8`` draws keep the values
    found and are completed by Gumbel-top-:math:`k` over the values not yet drawn, which
    leaves the distribution exact.

    Args:
        logits (Tensor): ``[B, N]`` unnormalised log-probabilities.
        counts (Tensor): ``[B]`` long, each in ``[0, N]``.
        gen (torch.Generator): source of randomness.
    """
    num_rows, num_cols = logits.shape
    max_count = int(counts.max()) if num_rows else 0
    out = torch.zeros(num_rows, max_count, dtype=torch.long)
    if max_count == 0:
        return out.view(-1)
    cdf = (logits - logits.max(dim=1, keepdim=True).values).exp_().cumsum_(dim=1)
    num_draws = OVERSAMPLE_FACTOR * max_count + OVERSAMPLE_EXTRA
    uniform = torch.rand(num_rows, num_draws, generator=gen) * cdf[:, -1:]
    draws = torch.searchsorted(cdf, uniform, right=True).clamp_(max=num_cols - 1)
    # First appearance of each value within its row, in draw order.
    sorted_draws, perm = torch.sort(draws, dim=1, stable=True)
    first_sorted = torch.ones_like(sorted_draws, dtype=torch.bool)
    first_sorted[:, 1:] = sorted_draws[:, 1:] != sorted_draws[:, :-1]
    is_first = torch.zeros_like(first_sorted).scatter_(1, perm, first_sorted)
    rank = is_first.cumsum(dim=1) - 1
    keep = is_first & (rank < counts.unsqueeze(1))
    rows = torch.arange(num_rows).unsqueeze(1).expand_as(draws)
    out[rows[keep], rank[keep]] = draws[keep]
    found = rank[:, -1] + 1  # distinct values among the draws of each row
    short = (found < counts).nonzero().view(-1)
    if short.numel() > 0:
        # Given its first `found` distinct values, the rest of a row is again successive
        # sampling over the values not yet drawn, however many draws it took: finish it
        # with Gumbel-top-k (-log(-log(u)) is a standard Gumbel variable) over those.
        found, need = found[short], (counts - found)[short]
        u = torch.rand(short.numel(), num_cols, generator=gen).clamp_(min=TINY)
        perturbed = logits[short] - torch.log(-torch.log(u))
        prefix = torch.arange(max_count) < found.unsqueeze(1)
        rows_s = torch.arange(short.numel()).unsqueeze(1).expand_as(prefix)
        perturbed[rows_s[prefix], out[short][prefix]] = -float("inf")
        top = perturbed.topk(int(need.max()), dim=1).indices
        fill = torch.arange(top.size(1)) < need.unsqueeze(1)
        rows_t = short.unsqueeze(1).expand_as(top)
        out[rows_t[fill], (found.unsqueeze(1) + torch.arange(top.size(1)))[fill]] = top[fill]
    return out[torch.arange(max_count) < counts.unsqueeze(1)]


class SyntheticMultiModal(InMemoryDataset):
    r"""A generated multimodal recommendation dataset with a planted latent structure of
    generic (shared by all modalities) and unique (modality-specific) item factors, the
    decomposition that SEA (`"Separate Learning for Multimedia Recommendation"`) learns and
    that MICRO (`"Latent Structure Mining with Contrastive Modality Fusion for Multimedia
    Recommendation"`, Zhang et al.) mines item-item structure from.
    Needs no files: ``root`` is :obj:`None` and the data is built in memory.

    Item :math:`i` has a generic factor :math:`\mathbf{g}_i \in \mathbb{R}^{G}` and, per
    modality :math:`m`, a unique factor :math:`\mathbf{u}_i^m \in \mathbb{R}^{K}` (all
    standard normal). Its features are a fixed random linear map of both plus noise,

    .. math::
        \mathbf{x}_i^m = \mathbf{W}^m [\mathbf{g}_i \,\|\, \mathbf{u}_i^m]
        + \sigma \boldsymbol{\epsilon}_i^m, \qquad
        \mathbf{W}^m_{jk} \sim \mathcal{N}(0, 1 / (G + K)),\;
        \boldsymbol{\epsilon} \sim \mathcal{N}(\mathbf{0}, \mathbf{I}),

    so every feature has unit signal variance. User :math:`u` has preferences
    :math:`\mathbf{p}_u \in \mathbb{R}^G` and :math:`\mathbf{q}_u^m \in \mathbb{R}^K` (standard
    normal) and the affinity

    .. math::
        a_{ui} = \frac{\mathbf{p}_u^\top \mathbf{g}_i + \sum_m {\mathbf{q}_u^m}^\top
        \mathbf{u}_i^m}{\sqrt{G + M K}}.

    Items have a Zipf-like popularity :math:`\pi_i \propto r_i^{-s}` (:math:`r_i` a random
    rank in :math:`1..I`, :math:`s` = :obj:`popularity_exponent`). User :math:`u` draws
    :math:`n_u` distinct items without replacement from
    :math:`\operatorname{softmax}_i(a_{ui} / \tau + \log \pi_i)` (successive sampling, the
    distribution of Gumbel-top-:math:`k`; see :func:`sample_without_replacement`), in blocks
    of at most ``MAX_BLOCK_ELEMENTS`` (:math:`2^{22}`) user-item scores, so no dense
    users x items matrix is ever built.
    :math:`n_u \ge 3` is long-tailed (3 each, the rest multinomial with log-normal user
    weights) and :math:`\sum_u n_u` equals :obj:`num_interactions` exactly. Each user's
    interactions are split at random 8:1:1 into train / valid / test
    (:math:`\max(1, \mathrm{round}(0.1 n_u))` each for valid and test, Python's rounding),
    so every user has at least one interaction in each split; with few interactions per user
    this puts less than 80% of all interactions into train (about 72% at the Amazon-Baby
    density of 8.3 per user).

    The single element ``dataset[0]`` is a :class:`~torch_geometric.data.HeteroData`
    following the data contract (checked by :func:`~pyg_multirec.datasets.validate_data`):

    * ``data['user'].num_nodes``, ``data['item'].num_nodes``;
    * ``data['item'][f'{m}_feat']``: float32 ``[num_items, d_m]``;
    * ``data.modalities``: sorted modality names;
    * ``data['user', s, 'item'].edge_index`` for ``s`` in ``('train', 'valid', 'test')``
      (sorted by user);

    plus the planted ground truth:

    * ``data['item'].generic_factor``: ``[num_items, generic_dim]`` (:math:`\mathbf{g}`);
    * ``data['item'][f'{m}_unique_factor']``: ``[num_items, unique_dim]``
      (:math:`\mathbf{u}^m`);
    * ``data['item'].popularity``: ``[num_items]`` (:math:`\pi`, sums to one);
    * ``data['user'].generic_preference``: ``[num_users, generic_dim]`` (:math:`\mathbf{p}`);
    * ``data['user'][f'{m}_unique_preference']``: ``[num_users, unique_dim]``
      (:math:`\mathbf{q}^m`).

    Generation is deterministic for a given :obj:`seed` (one :class:`torch.Generator`).
    The Amazon-Baby size (19,445 users, 7,050 items, 160,792 interactions, dims
    ``{'image': 4096, 'text': 384}``) takes a few seconds.

    Args:
        num_users (int, optional): number of users :math:`U`. (default: :obj:`1000`)
        num_items (int, optional): number of items :math:`I` (at least 3).
            (default: :obj:`500`)
        num_interactions (int, optional): total interactions, in
            ``[3 * num_users, num_users * num_items]``. (default: :obj:`20000`)
        modality_dims (Mapping[str, int], optional): feature width :math:`d_m` per modality
            name. (default: ``{'image': 64, 'text': 32}``)
        generic_dim (int, optional): :math:`G`. (default: :obj:`8`)
        unique_dim (int, optional): :math:`K`. (default: :obj:`4`)
        noise (float, optional): feature noise :math:`\sigma \ge 0`. (default: :obj:`0.1`)
        popularity_exponent (float, optional): Zipf exponent :math:`s \ge 0` (:obj:`0`:
            uniform popularity). (default: :obj:`1.0`)
        seed (int, optional): random seed. (default: :obj:`0`)
        temperature (float, optional): :math:`\tau > 0`; smaller means choices follow the
            affinity more and popularity less. (default: :obj:`0.3`)
        transform (callable, optional): applied to the data object on every access.
            (default: :obj:`None`)
    """

    def __init__(
        self,
        num_users: int = 1000,
        num_items: int = 500,
        num_interactions: int = 20000,
        modality_dims: Mapping[str, int] | None = None,
        generic_dim: int = 8,
        unique_dim: int = 4,
        noise: float = 0.1,
        popularity_exponent: float = 1.0,
        seed: int = 0,
        temperature: float = 0.3,
        transform: Callable | None = None,
    ) -> None:
        self._num_users = check_int(num_users, "'num_users'", 1)
        self._num_items = check_int(num_items, "'num_items'", MIN_INTERACTIONS_PER_USER)
        check_int(num_interactions, "'num_interactions'", 1)
        low = MIN_INTERACTIONS_PER_USER * num_users
        if not low <= num_interactions <= num_users * num_items:
            raise ValueError(
                f"'num_interactions' must lie in [{low}, {num_users * num_items}] "
                f"({MIN_INTERACTIONS_PER_USER} per user up to every user-item pair) "
                f"(got {num_interactions})"
            )
        if modality_dims is None:
            modality_dims = DEFAULT_MODALITY_DIMS
        dims = dict(modality_dims) if isinstance(modality_dims, Mapping) else {}
        if not dims:
            raise ValueError(f"'modality_dims' must be a non-empty mapping of modality name to "
                             f"feature width (got {modality_dims!r})")
        for m, d in dims.items():
            if not isinstance(m, str) or not m:
                raise ValueError(f"'modality_dims' keys must be non-empty str (got {m!r})")
            check_int(d, f"'modality_dims['{m}']'", 1)
        self.modality_dims = {m: dims[m] for m in sorted(dims)}
        self.num_interactions = num_interactions
        self.generic_dim = check_int(generic_dim, "'generic_dim'", 1)
        self.unique_dim = check_int(unique_dim, "'unique_dim'", 1)
        self.noise = check_finite_float(noise, "'noise'", minimum=0)
        self.popularity_exponent = check_finite_float(
            popularity_exponent, "'popularity_exponent'", minimum=0
        )
        self.temperature = check_finite_float(temperature, "'temperature'", 0, strict=True)
        self.seed = check_int(seed, "'seed'")
        super().__init__(None, transform)
        data = self._generate()
        validate_data(data)
        self.data, self.slices = self.collate([data])

    @property
    def modalities(self) -> list[str]:
        """Sorted modality names."""
        return list(self.modality_dims)

    @property
    def num_users(self) -> int:
        """Number of users."""
        return self._num_users

    @property
    def num_items(self) -> int:
        """Number of items."""
        return self._num_items

    def _generate(self) -> HeteroData:
        gen = torch.Generator().manual_seed(self.seed)
        num_users, num_items = self._num_users, self._num_items
        modalities = self.modalities
        data = HeteroData()
        data[USER].num_nodes = num_users
        data[ITEM].num_nodes = num_items
        data.modalities = modalities

        # Planted item factors and features.
        generic = _gaussian((num_items, self.generic_dim), gen)
        data[ITEM].generic_factor = generic
        item_latent, user_latent = [generic], []
        for m in modalities:
            unique = _gaussian((num_items, self.unique_dim), gen)
            data[ITEM][f"{m}_unique_factor"] = unique
            item_latent.append(unique)
            latent_dim = self.generic_dim + self.unique_dim
            mixing = _gaussian((latent_dim, self.modality_dims[m]), gen) / math.sqrt(latent_dim)
            feat = torch.cat([generic, unique], dim=1) @ mixing
            feat += self.noise * _gaussian(tuple(feat.shape), gen)
            data[ITEM][feature_key(m)] = feat.float()

        # Zipf-like popularity over a random ranking of the items.
        rank = torch.randperm(num_items, generator=gen).double() + 1
        log_popularity = torch.log_softmax(-self.popularity_exponent * torch.log(rank), 0)
        data[ITEM].popularity = log_popularity.exp().float()

        # User preferences over the generic and the unique factors.
        data[USER].generic_preference = _gaussian((num_users, self.generic_dim), gen)
        user_latent.append(data[USER].generic_preference)
        for m in modalities:
            pref = _gaussian((num_users, self.unique_dim), gen)
            data[USER][f"{m}_unique_preference"] = pref
            user_latent.append(pref)
        scale = 1.0 / (math.sqrt(self.generic_dim + len(modalities) * self.unique_dim)
                       * self.temperature)
        item_latent_t = torch.cat(item_latent, dim=1).t().contiguous()
        user_latent_all = torch.cat(user_latent, dim=1) * scale

        counts = interactions_per_user(num_users, num_items, self.num_interactions, gen)
        users, items = [], []
        block = max(1, MAX_BLOCK_ELEMENTS // num_items)  # bounded memory: block x items scores
        for start in range(0, num_users, block):
            end = min(start + block, num_users)
            logits = torch.addmm(log_popularity.float(), user_latent_all[start:end],
                                 item_latent_t)
            items.append(sample_without_replacement(logits, counts[start:end], gen))
            users.append(torch.arange(start, end).repeat_interleave(counts[start:end]))
        users, items = torch.cat(users), torch.cat(items)
        # 8:1:1 per user, in a random order within each user.
        order = torch.argsort(torch.rand(users.numel(), generator=gen))
        labels = holdout_labels(users, num_users, order)
        for split, label in SPLIT_LABELS.items():
            mask = labels == label
            data[split_edge_type(split)].edge_index = torch.stack([users[mask], items[mask]])
        return data

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(users={self._num_users}, items={self._num_items}, "
                f"interactions={self.num_interactions}, modalities={self.modality_dims})")
