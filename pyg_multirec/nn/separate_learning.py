"""SEA's separate learning of modal-generic and modal-unique item representations."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Optional

import torch
from torch import Tensor
from torch.nn import BatchNorm1d, Linear, Module, ModuleList, Parameter, ReLU, Sequential

from pyg_multirec.losses import FittedCLUB, InfoNCELoss, NegativeL2Distance, SoloSimLoss
from pyg_multirec.nn.linear_chain import linear_chain

ALIGN_CHOICES = ("solosim", "infonce", "none")
DISTANCE_CHOICES = ("club", "l2", "none")
# Defaults of SEA's official code (github.com/bruno686/SEA).
ALPHA = 0.012  # weight of the alignment loss (official CLI default)
BETA = 0.006  # weight of the distancing loss (official 'ureg')
TAU = 0.2  # SoloSim temperature (official model config)
PROJ_HIDDEN = 64  # projection heads of the alignment loss (official hidden_dim)
PROJ_DIM = 32  # (official out_dim)
CLUB_DIM = 32  # linear maps of the halves fed to the distancing loss (official 32)
CLUB_HIDDEN = 8  # official CLUBSample(hidden_size=16) uses hidden_size // 2 units
CLUB_STEPS = 50  # inner Adam steps of the estimator per training batch (official trainer)
CLUB_LR = 1e-4  # the official code fits CLUB at the model's learning rate (1e-4)
MIN_MODALITIES = 2
MIN_CHANNELS = 2  # a generic and a unique half


class ProjectionHead(Module):
    r"""The projection head that SEA's official code puts in front of the alignment loss:
    :math:`\mathrm{Linear} \to \mathrm{BN} \to \mathrm{ReLU} \to \mathrm{Linear} \to
    \mathrm{BN} \to \mathrm{ReLU} \to \mathrm{Linear}`.

    Args:
        in_channels (int): Size of each input sample (a generic half).
        hidden_channels (int): Width of the two hidden layers.
        out_channels (int): Size of each output sample.

    Shapes:
        - **input:** :math:`(B, F_{in})`, :math:`B \ge 2` in training (batch norm)
        - **output:** :math:`(B, F_{out})`
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int) -> None:
        super().__init__()
        self.mlp = Sequential(
            Linear(in_channels, hidden_channels),
            BatchNorm1d(hidden_channels),
            ReLU(),
            Linear(hidden_channels, hidden_channels),
            BatchNorm1d(hidden_channels),
            ReLU(),
            Linear(hidden_channels, out_channels),
        )

    def reset_parameters(self) -> None:
        for module in self.mlp:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


class SeparateLearning(Module):
    r"""The separate learning of modal-generic and modal-unique representations from the
    "It is Never Too Late to Mend: Separate Learning for Multimedia Recommendation" paper
    (SEA; He et al., 2024, section 4.2), as a module that any multimodal model can add to
    its loss (the plug-and-play use of the paper's Table 3).

    Each modality's item representation :math:`\mathbf{x}^m_i \in \mathbb{R}^{F_m}` is split
    into a *generic* half :math:`\mathbf{g}^m_i` (its first :math:`\lfloor F_m/2 \rfloor`
    entries) and a *unique* half :math:`\mathbf{u}^m_i` (the rest). On a batch
    :math:`\mathcal{B}` of items, the generic halves of every pair of modalities are aligned
    by maximising a lower bound of their mutual information (eq. 16), and inside each
    modality the unique half is pushed away from the generic half by minimising the CLUB
    upper bound of their mutual information (eq. 14-15):

    .. math::
        \mathcal{L}_{\mathrm{align}} = \binom{M}{2}^{-1} \sum_{m < n}
        \mathcal{L}_{\mathrm{SoloSim}}(P_m \mathbf{g}^m_{\mathcal{B}},
        P_n \mathbf{g}^n_{\mathcal{B}}), \qquad
        \mathcal{L}_{\mathrm{dist}} = \frac{1}{M} \sum_{m}
        \hat{I}_{\mathrm{CLUB}}(G_m \mathbf{g}^m_{\mathcal{B}}, U_m \mathbf{u}^m_{\mathcal{B}}),

    with

    .. math::
        \mathcal{L}_{\mathrm{SoloSim}}(\mathbf{a}, \mathbf{b}) = -\frac{1}{|\mathcal{B}|}
        \sum_{i} \log \frac{\exp(\cos(\mathbf{a}_i, \mathbf{b}_i)/\tau)}
        {\sum_{j} \exp(\cos(\mathbf{a}_i, \mathbf{b}_j)/\tau)}, \qquad
        \hat{I}_{\mathrm{CLUB}}(\mathbf{g}, \mathbf{u}) = \frac{1}{|\mathcal{B}|} \sum_i
        \left[\log q_\theta(\mathbf{u}_i | \mathbf{g}_i)
        - \log q_\theta(\mathbf{u}_{k'_i} | \mathbf{g}_i)\right],

    projection heads :math:`P_m` (:class:`ProjectionHead`) and linear maps :math:`G_m, U_m`
    as in the official code, and a random permutation :math:`k'`. The host model adds
    :math:`\alpha \mathcal{L}_{\mathrm{align}} + \beta \mathcal{L}_{\mathrm{dist}}` to its
    ranking loss (eq. 19; :meth:`weighted_sum`). The variational network :math:`q_\theta`
    (one for all modalities, as in the official code) is fitted by its own Adam on the
    detached halves, ``club_steps`` steps before each estimate in training; keep its
    parameters out of the host's optimizer (return :meth:`auxiliary_parameters` from the
    host's ``auxiliary_parameters()``).

    The alternatives of the paper's Table 4 and the ablations of its Fig. 3 are choices:
    ``align='infonce'`` (:class:`~pyg_multirec.losses.InfoNCELoss`, both directions) or
    ``'none'``; ``distance='l2'`` (the negative distance of appendix A.4, eq. 30,
    :class:`~pyg_multirec.losses.NegativeL2Distance`) or ``'none'``. A term set to
    ``'none'`` is dropped with its modules. Table 4's variants: a = (solosim, club),
    b = (solosim, l2), c = (infonce, club), d = (infonce, l2).

    Args:
        in_channels (Sequence[int]): Width :math:`F_m \ge 2` of each modality's
            representation (at least two modalities).
        align (str, optional): ``'solosim'``, ``'infonce'`` or ``'none'``.
            (default: ``'solosim'``)
        distance (str, optional): ``'club'``, ``'l2'`` or ``'none'``. (default: ``'club'``)
        alpha (float, optional): Weight :math:`\alpha \ge 0` of the alignment term.
            (default: :obj:`0.012`)
        beta (float, optional): Weight :math:`\beta \ge 0` of the distancing term.
            (default: :obj:`0.006`)
        tau (float, optional): Temperature :math:`\tau > 0` of the alignment loss.
            (default: :obj:`0.2`)
        proj_hidden (int, optional): Hidden width of the projection heads. (default: :obj:`64`)
        proj_dim (int, optional): Output width of the projection heads. (default: :obj:`32`)
        club_dim (int, optional): Output width of the maps :math:`G_m, U_m`.
            (default: :obj:`32`)
        club_hidden (int, optional): Hidden width of the CLUB estimator. (default: :obj:`8`)
        club_steps (int, optional): Inner Adam steps of the estimator per training call.
            (default: :obj:`50`)
        club_lr (float, optional): Learning rate of the estimator's Adam; keep it near the
            host's (the official code uses the same rate): the estimate is not clamped, so an
            estimator that lags behind lets the encoder drive it far below zero.
            (default: :obj:`1e-4`, SEA's learning rate)

    Shapes:
        - **input:** a list of :math:`M` tensors :math:`(B, F_m)`, the same :math:`B \ge 2`
          items in every modality
        - **output:** a dictionary with the scalars ``'align'`` and ``'distance'`` (each
          present unless set to ``'none'``)
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        align: str = "solosim",
        distance: str = "club",
        alpha: float = ALPHA,
        beta: float = BETA,
        tau: float = TAU,
        proj_hidden: int = PROJ_HIDDEN,
        proj_dim: int = PROJ_DIM,
        club_dim: int = CLUB_DIM,
        club_hidden: int = CLUB_HIDDEN,
        club_steps: int = CLUB_STEPS,
        club_lr: float = CLUB_LR,
    ) -> None:
        super().__init__()
        if isinstance(in_channels, int) or not isinstance(in_channels, Sequence):
            raise TypeError(
                f"in_channels must be a sequence with one width per modality "
                f"(got {type(in_channels).__name__})"
            )
        if len(in_channels) < MIN_MODALITIES:
            raise ValueError(
                f"SeparateLearning aligns modalities in pairs: it needs at least "
                f"{MIN_MODALITIES} modalities (got in_channels={list(in_channels)})"
            )
        for width in in_channels:
            if isinstance(width, bool) or not isinstance(width, int) or width < MIN_CHANNELS:
                raise ValueError(
                    f"every width in in_channels must be an int >= {MIN_CHANNELS} (a generic "
                    f"and a unique half; got {list(in_channels)})"
                )
        for name, value, choices in (
            ("align", align, ALIGN_CHOICES),
            ("distance", distance, DISTANCE_CHOICES),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices} (got {value!r})")
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 (got {value!r})")
        self.in_channels = list(in_channels)
        self.generic_channels = [width // 2 for width in self.in_channels]
        self.align, self.distance = align, distance
        self.alpha, self.beta = float(alpha), float(beta)

        self.align_heads: Optional[ModuleList] = None
        self.align_loss: Optional[Module] = None
        if align != "none":
            self.align_heads = ModuleList(
                ProjectionHead(g, proj_hidden, proj_dim) for g in self.generic_channels
            )
            self.align_loss = SoloSimLoss(tau) if align == "solosim" else InfoNCELoss(tau)

        self.generic_maps: Optional[ModuleList] = None
        self.unique_maps: Optional[ModuleList] = None
        self.club: Optional[FittedCLUB] = None
        self.l2_distance: Optional[NegativeL2Distance] = None
        if distance != "none":
            self.generic_maps = ModuleList(Linear(g, club_dim) for g in self.generic_channels)
            self.unique_maps = ModuleList(
                Linear(w - g, club_dim) for w, g in zip(self.in_channels, self.generic_channels)
            )
            if distance == "club":
                self.club = FittedCLUB(club_dim, club_dim, club_hidden, club_steps, club_lr)
            else:
                self.l2_distance = NegativeL2Distance()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for modules in (self.align_heads, self.generic_maps, self.unique_maps):
            for module in modules or ():
                module.reset_parameters()
        if self.club is not None:
            self.club.reset_parameters()

    def auxiliary_parameters(self) -> list[Parameter]:
        """The CLUB estimator's parameters: fitted by its own Adam, not the host's."""
        return list(self.club.parameters()) if self.club is not None else []

    def split(self, xs: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """The generic (first half) and unique (second half) parts of every modality."""
        if len(xs) != len(self.in_channels):
            raise ValueError(f"expected {len(self.in_channels)} modality tensors (got {len(xs)})")
        for m, (x, width) in enumerate(zip(xs, self.in_channels)):
            if not isinstance(x, Tensor) or x.dim() != 2 or x.size(1) != width:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"xs[{m}] must have shape [B, {width}] (got {shape})")
        if len({x.size(0) for x in xs}) != 1:
            raise ValueError(
                f"every modality needs the same items (got batch sizes {[x.size(0) for x in xs]})"
            )
        generic = [x[:, :g] for x, g in zip(xs, self.generic_channels)]
        unique = [x[:, g:] for x, g in zip(xs, self.generic_channels)]
        return generic, unique

    def alignment(self, generic: Sequence[Tensor]) -> Tensor:
        """eq. 16 between the projected generic halves, averaged over pairs of modalities."""
        assert self.align_heads is not None
        return self._alignment([head.mlp[0](g) for head, g in zip(self.align_heads, generic)])

    def distancing(self, generic: Sequence[Tensor], unique: Sequence[Tensor]) -> Tensor:
        """eq. 15 (or eq. 30's negative distance) inside each modality, averaged."""
        assert self.generic_maps is not None and self.unique_maps is not None
        return self._distancing(
            [f(x) for f, x in zip(self.generic_maps, generic)],
            [f(x) for f, x in zip(self.unique_maps, unique)],
        )

    def _alignment(self, first_layers: Sequence[Tensor]) -> Tensor:
        """eq. 16 from the outputs of the projection heads' first linear layers."""
        assert self.align_heads is not None and self.align_loss is not None
        views = [head.mlp[1:](h) for head, h in zip(self.align_heads, first_layers)]
        pairs = list(itertools.combinations(range(len(views)), 2))
        return sum(self.align_loss(views[a], views[b]) for a, b in pairs) / len(pairs)

    def _distancing(self, g: Sequence[Tensor], u: Sequence[Tensor]) -> Tensor:
        """eq. 15 / eq. 30 from the mapped halves :math:`G_m g^m` and :math:`U_m u^m`."""
        if self.club is not None:
            if self.training and torch.is_grad_enabled():
                # eq. 15's alternation: fit q(u | g) on the detached samples first
                self.club.fit(torch.cat(list(g)), torch.cat(list(u)))
            terms = [self.club(gm, um) for gm, um in zip(g, u)]
        else:
            assert self.l2_distance is not None
            terms = [self.l2_distance(um, gm) for gm, um in zip(g, u)]  # eq. 30
        return sum(terms) / len(terms)

    def forward(self, xs: Sequence[Tensor]) -> dict[str, Tensor]:
        generic, unique = self.split(xs)
        read = [([layer(g) for layer in self._readers(m, generic=True)],
                 [layer(u) for layer in self._readers(m, generic=False)])
                for m, (g, u) in enumerate(zip(generic, unique))]
        return self._terms(read)

    def _terms(self, read: Sequence[tuple[list[Tensor], list[Tensor]]]) -> dict[str, Tensor]:
        """The enabled terms from what the first layers made of the halves: ``read[m]`` holds
        the outputs of the layers that read modality ``m``'s generic and unique halves, in
        :meth:`_readers`' order (the projection head's first layer for alignment, then
        :math:`G_m`; :math:`U_m`)."""
        first_align, mapped_g, mapped_u = [], [], []
        for generic_out, unique_out in read:
            generic_out = list(generic_out)
            if self.align_heads is not None:
                first_align.append(generic_out.pop(0))
            if self.generic_maps is not None:
                mapped_g.append(generic_out.pop(0))
                mapped_u.append(unique_out[0])
        terms = {}
        if self.align_heads is not None:
            terms["align"] = self._alignment(first_align)
        if self.generic_maps is not None:
            terms["distance"] = self._distancing(mapped_g, mapped_u)
        return terms

    def forward_affine(
        self,
        features: Sequence[Tensor],
        weights: Sequence[Tensor],
        biases: Sequence[Optional[Tensor]],
    ) -> dict[str, Tensor]:
        r"""The terms of :meth:`forward` for inputs that are affine maps of features,
        :math:`\mathbf{x}^m = \mathbf{f}^m \mathbf{W}_m^{\top} + \mathbf{b}_m`, without
        forming :math:`\mathbf{x}^m`: every layer that reads a half (the projection head's
        first layer, :math:`G_m`, :math:`U_m`) is chained with the rows of
        :math:`\mathbf{W}_m, \mathbf{b}_m` that make that half by
        :func:`~pyg_multirec.nn.linear_chain`, which takes the cheaper order. Same values as
        ``forward([f @ W.T + b ...])`` up to rounding; much cheaper when the map is wide
        (SEA's official :math:`4096 \times 4096` image projection).

        Args:
            features (Sequence[torch.Tensor]): :math:`M` tensors :math:`(B, F^{in}_m)`, the
                same :math:`B` items in every modality.
            weights (Sequence[torch.Tensor]): :math:`M` maps :math:`(F_m, F^{in}_m)`, with
                :math:`F_m` the module's ``in_channels[m]``.
            biases (Sequence[torch.Tensor or None]): :math:`M` biases :math:`(F_m,)` or
                :obj:`None`.
        """
        count = len(self.in_channels)
        if not (len(features) == len(weights) == len(biases) == count):
            raise ValueError(
                f"expected {count} features, weights and biases (got {len(features)}, "
                f"{len(weights)} and {len(biases)})"
            )
        for m, (f, w, b, width) in enumerate(zip(features, weights, biases, self.in_channels)):
            if f.dim() != 2 or w.dim() != 2 or w.size(0) != width or w.size(1) != f.size(1):
                raise ValueError(
                    f"modality {m}: features must be [B, F_in] and weights [{width}, F_in] "
                    f"(got {tuple(f.shape)} and {tuple(w.shape)})"
                )
            if b is not None and tuple(b.shape) != (width,):
                raise ValueError(f"modality {m}: bias must have shape [{width}] (got "
                                 f"{tuple(b.shape)})")
        if len({f.size(0) for f in features}) != 1:
            raise ValueError(
                f"every modality needs the same items (got batch sizes "
                f"{[f.size(0) for f in features]})"
            )
        read = []
        for m, (f, w, b, g) in enumerate(zip(features, weights, biases, self.generic_channels)):
            generic_out, unique_out = (
                _chained(f, w[rows], None if b is None else b[rows], self._readers(m, generic))
                for rows, generic in ((slice(0, g), True), (slice(g, None), False))
            )
            read.append((generic_out, unique_out))
        return self._terms(read)

    def _readers(self, m: int, generic: bool) -> list[Linear]:
        """The linear layers that read modality ``m``'s generic (or unique) half, in the
        order :meth:`_terms` reads their outputs."""
        layers = []
        if generic and self.align_heads is not None:
            layers.append(self.align_heads[m].mlp[0])
        maps = self.generic_maps if generic else self.unique_maps
        if maps is not None:
            layers.append(maps[m])
        return layers

    def weighted_sum(self, terms: Mapping[str, Tensor]) -> Tensor:
        r""":math:`\alpha \mathcal{L}_{\mathrm{align}} + \beta \mathcal{L}_{\mathrm{dist}}`
        of the terms :meth:`forward` returned (eq. 19 without the ranking loss)."""
        total = torch.zeros(())
        if "align" in terms:
            total = self.alpha * terms["align"]
        if "distance" in terms:
            total = total + self.beta * terms["distance"]
        return total

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.in_channels}, align={self.align!r}, "
            f"distance={self.distance!r}, alpha={self.alpha}, beta={self.beta})"
        )


def _chained(x: Tensor, weight: Tensor, bias: Optional[Tensor],
             readers: Sequence[Linear]) -> list[Tensor]:
    """Each reader applied to ``x W^T + b`` (one :func:`linear_chain` over the stacked
    readers, then split), without forming ``x W^T + b``."""
    if not readers:
        return []
    stacked_w = torch.cat([layer.weight for layer in readers])
    stacked_b = torch.cat([layer.bias for layer in readers])
    out = linear_chain(x, weight, bias, stacked_w, stacked_b)
    return list(out.split([layer.out_features for layer in readers], dim=1))
