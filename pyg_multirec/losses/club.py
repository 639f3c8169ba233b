import math
from typing import Optional

import torch
from torch import Tensor
from torch.nn import Linear, Module, ReLU, Sequential, Tanh
from torch.optim import Optimizer

from pyg_multirec.losses._checks import check_float_tensor, check_min_rows

LOG_2PI = math.log(2.0 * math.pi)
HALF = 0.5


class CLUBEstimator(Module):
    r"""The Contrastive Log-ratio Upper Bound (CLUB) of mutual information from
    the `"CLUB: A Contrastive Log-ratio Upper Bound of Mutual Information"
    <https://arxiv.org/abs/2006.12013>`_ paper (Cheng et al., 2020), used as the
    distancing loss between the generic and unique parts of a modality in the
    "It is Never Too Late to Mend: Separate Learning for Multimedia
    Recommendation" (SEA) paper (eq. 14-15).

    The unknown conditional :math:`p(\mathbf{y} | \mathbf{x})` is approximated
    by a diagonal Gaussian
    :math:`q_\theta(\mathbf{y} | \mathbf{x}) = \mathcal{N}(\boldsymbol{\mu}(\mathbf{x}),
    \operatorname{diag} \exp \mathbf{s}(\mathbf{x}))` whose mean
    :math:`\boldsymbol{\mu}` and log-variance :math:`\mathbf{s}` are two-layer
    MLPs (the log-variance head ends in :math:`\tanh`, as in Cheng et al., so the
    variance lies in :math:`[e^{-1}, e]`: inputs should be roughly unit-scale).
    For a batch :math:`\{(\mathbf{x}_i, \mathbf{y}_i)\}_{i=1}^{B}`, the sampled
    estimate (SEA eq. 15, Cheng et al.'s CLUB-S) is

    .. math::
        \hat{I}_{\mathrm{CLUB\text{-}S}} = \frac{1}{B} \sum_{i=1}^{B} \left[
        \log q_\theta(\mathbf{y}_i | \mathbf{x}_i)
        - \log q_\theta(\mathbf{y}_{k'_i} | \mathbf{x}_i) \right]
        = \frac{1}{B} \sum_{i=1}^{B} \sum_{d} \frac{
        (y_{k'_i,d} - \mu_d(\mathbf{x}_i))^2 - (y_{i,d} - \mu_d(\mathbf{x}_i))^2}
        {2 \exp s_d(\mathbf{x}_i)},

    with :math:`k'` a uniformly random permutation of the batch (a fixed point
    :math:`k'_i = i` contributes zero, as in Cheng et al.). The factor
    :math:`\frac{1}{2}` is the one of the Gaussian log-density and is applied
    once; SEA's official code halves the difference a second time, which
    merely scales the estimate (and the distancing weight) by :math:`\frac{1}{2}`.
    With :obj:`sampled=False`, the full CLUB estimate averages over all
    :math:`B` candidates :math:`j` (including :math:`j = i`, as in Cheng et al.),

    .. math::
        \hat{I}_{\mathrm{CLUB}} = \frac{1}{B} \sum_{i} \log q_\theta(\mathbf{y}_i | \mathbf{x}_i)
        - \frac{1}{B^2} \sum_{i} \sum_{j} \log q_\theta(\mathbf{y}_j | \mathbf{x}_i),

    computed in :math:`O(B)` memory via
    :math:`\frac{1}{B}\sum_j (y_{j,d} - \mu_{i,d})^2 = \operatorname{Var}(y_d)
    + (\bar{y}_d - \mu_{i,d})^2`.

    The variational network is fitted by maximising :meth:`log_likelihood`
    (minimising :meth:`learning_loss`) on *detached* samples with its own
    optimizer, alternately with the encoder that minimises :meth:`forward`;
    :meth:`fit_step` runs that inner loop. Keep the estimator's parameters out
    of the main optimizer (see ``Recommender.auxiliary_parameters``). Typical
    use, once per training batch:

    .. code-block:: python

        club = CLUBEstimator(32, 32, hidden_channels=16)
        club_opt = torch.optim.Adam(club.parameters(), lr=1e-4)
        ...
        club.fit_step(generic, unique, club_opt, steps=50)  # SEA's official code
        loss = bpr + beta * club(generic, unique)           # SEA eq. 19

    Args:
        x_dim (int): Size of each :math:`\mathbf{x}` sample.
        y_dim (int): Size of each :math:`\mathbf{y}` sample.
        hidden_channels (int): Hidden width of the mean and log-variance MLPs.
            (Cheng et al.'s code uses :obj:`hidden_size // 2` hidden units; pass
            that value here to reproduce it, e.g. :obj:`8` for SEA's
            :obj:`hidden_size=16`.)

    Shapes:
        - **input:** :math:`\mathbf{x}` :math:`(B, F_x)`, :math:`\mathbf{y}` :math:`(B, F_y)`
        - **output:** scalar
    """

    def __init__(self, x_dim: int, y_dim: int, hidden_channels: int) -> None:
        super().__init__()
        for name, value in (
            ("x_dim", x_dim),
            ("y_dim", y_dim),
            ("hidden_channels", hidden_channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"'{name}' must be a positive integer (got {value!r})")
        self.x_dim = x_dim
        self.y_dim = y_dim
        self.hidden_channels = hidden_channels
        self.mu = Sequential(Linear(x_dim, hidden_channels), ReLU(), Linear(hidden_channels, y_dim))
        self.logvar = Sequential(
            Linear(x_dim, hidden_channels), ReLU(), Linear(hidden_channels, y_dim), Tanh()
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        for module in self.modules():
            if isinstance(module, Linear):
                module.reset_parameters()

    def _check(self, x: Tensor, y: Tensor, min_rows: int = 1) -> None:
        check_float_tensor(x, "x", dim=2)
        check_float_tensor(y, "y", dim=2)
        if x.size(1) != self.x_dim:
            raise ValueError(f"'x' must have {self.x_dim} columns (got shape {tuple(x.shape)})")
        if y.size(1) != self.y_dim:
            raise ValueError(f"'y' must have {self.y_dim} columns (got shape {tuple(y.shape)})")
        if x.size(0) != y.size(0):
            raise ValueError(
                f"'x' and 'y' must have the same batch size (got {x.size(0)} and {y.size(0)})"
            )
        check_min_rows(x, "x", min_rows)

    def _log_likelihood(self, x: Tensor, y: Tensor) -> Tensor:
        mu, logvar = self.mu(x), self.logvar(x)
        # Gaussian log-density log N(y | mu, diag exp(logvar)), summed over dimensions.
        log_q = -HALF * ((y - mu).pow(2) / logvar.exp() + logvar + LOG_2PI).sum(dim=-1)
        return log_q.mean()

    def log_likelihood(self, x: Tensor, y: Tensor) -> Tensor:
        r"""Mean over the batch of :math:`\log q_\theta(\mathbf{y}_i | \mathbf{x}_i)`:
        the exact Gaussian log-density, normalising constant included
        (Cheng et al.'s code drops the constant and the factor :math:`\frac{1}{2}`,
        which changes the scale of the gradients, not the maximiser)."""
        self._check(x, y)
        return self._log_likelihood(x, y)

    def learning_loss(self, x: Tensor, y: Tensor) -> Tensor:
        r"""Negative :meth:`log_likelihood`, minimised to fit :math:`q_\theta`."""
        return -self.log_likelihood(x, y)

    def forward(
        self,
        x: Tensor,
        y: Tensor,
        sampled: bool = True,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        r"""
        Args:
            x (torch.Tensor): Samples of :math:`\mathbf{x}` (e.g. generic parts).
            y (torch.Tensor): Paired samples of :math:`\mathbf{y}` (e.g. unique parts).
            sampled (bool, optional): If :obj:`True`, one random negative per
                sample (SEA eq. 15); otherwise all pairs. (default: :obj:`True`)
            generator (torch.Generator, optional): Source of the random
                permutation when :obj:`sampled=True`. (default: :obj:`None`)
        """
        self._check(x, y, min_rows=2)
        mu, logvar = self.mu(x), self.logvar(x)
        inv_var = (-logvar).exp()
        positive = (y - mu).pow(2)
        if sampled:  # SEA eq. 15
            device = generator.device if generator is not None else x.device
            perm = torch.randperm(x.size(0), generator=generator, device=device)
            negative = (y[perm.to(x.device)] - mu).pow(2)
        else:  # Cheng et al.'s full CLUB: mean over all y_j, in O(B) memory
            y_mean = y.mean(dim=0, keepdim=True)
            y_var = (y - y_mean).pow(2).mean(dim=0, keepdim=True)
            negative = y_var + (y_mean - mu).pow(2)
        return (HALF * (negative - positive) * inv_var).sum(dim=-1).mean()

    def fit_step(self, x: Tensor, y: Tensor, optimizer: Optimizer, steps: int = 1) -> float:
        r"""Fits :math:`q_\theta` on the detached samples: runs :obj:`steps`
        optimizer steps on :meth:`learning_loss` and returns the loss of the last
        step (as computed before that step's update).

        Each step costs one forward and one backward pass of the two small MLPs
        on the :math:`(B, F_x)` batch, so the inner loop adds :obj:`steps` such
        passes per training batch (SEA's official code: 50). No gradient reaches
        :obj:`x` or :obj:`y`. The optimizer should hold only this estimator's
        parameters; their gradients are zeroed before every step.

        Args:
            x (torch.Tensor): Samples of :math:`\mathbf{x}`, :math:`(B, F_x)`.
            y (torch.Tensor): Paired samples of :math:`\mathbf{y}`, :math:`(B, F_y)`.
            optimizer (torch.optim.Optimizer): Optimizer over this estimator's parameters.
            steps (int, optional): Number of optimizer steps. (default: :obj:`1`)
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"'steps' must be a positive integer (got {steps!r})")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"'optimizer' must be a torch.optim.Optimizer (got {type(optimizer).__name__})"
            )
        self._check(x, y)
        x, y = x.detach(), y.detach()
        with torch.enable_grad():
            for _ in range(steps):
                optimizer.zero_grad()
                loss = -self._log_likelihood(x, y)
                loss.backward()
                optimizer.step()
        return float(loss.detach())

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.x_dim}, {self.y_dim}, "
            f"hidden_channels={self.hidden_channels})"
        )
