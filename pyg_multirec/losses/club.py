import io
import math
from typing import Optional

import torch
from torch import Tensor
from torch.nn import Linear, Module, ReLU, Sequential, Tanh
from torch.optim import Optimizer

from pyg_multirec._checks import check_count, check_float_tensor, check_min_rows
from pyg_multirec.distributed import gather_rows
from pyg_multirec.losses._club_fit import ClosedFormFit, adam_settings, capacity_for
from pyg_multirec.losses._cuda_graph import GraphedFit

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
    With :obj:`sampled=False`, the full CLUB estimate (the bound of SEA eq. 14,
    Cheng et al.'s CLUB, with :math:`q_\theta` in place of the unknown conditional)
    averages over all :math:`B` candidates :math:`j` (including :math:`j = i`, as in
    Cheng et al.),

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
            check_count(value, f"'{name}'")
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

    def _row_log_likelihood(self, x: Tensor, y: Tensor) -> Tensor:
        mu, logvar = self.mu(x), self.logvar(x)
        # Gaussian log-density log N(y | mu, diag exp(logvar)), summed over dimensions.
        return -HALF * ((y - mu).pow(2) / logvar.exp() + logvar + LOG_2PI).sum(dim=-1)

    def _log_likelihood(self, x: Tensor, y: Tensor) -> Tensor:
        return self._row_log_likelihood(x, y).mean()

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
        check_count(steps, "'steps'")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"'optimizer' must be a torch.optim.Optimizer (got {type(optimizer).__name__})"
            )
        self._check(x, y)
        return float(self._fit_steps(x.detach(), y.detach(), optimizer, steps))

    def _fit_steps(self, x: Tensor, y: Tensor, optimizer: Optimizer, steps: int) -> Tensor:
        with torch.enable_grad():
            for _ in range(steps):
                optimizer.zero_grad()
                loss = -self._log_likelihood(x, y)
                loss.backward()
                optimizer.step()
        return loss.detach()

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.x_dim}, {self.y_dim}, "
            f"hidden_channels={self.hidden_channels})"
        )


class FittedCLUB(Module):
    r"""A :class:`CLUBEstimator` together with the Adam optimizer that fits its
    variational network :math:`q_\theta(\mathbf{y} | \mathbf{x})`, as SEA
    ("It is Never Too Late to Mend", eq. 15) alternates it with the encoder:
    before each estimate, :meth:`fit` runs :obj:`steps` Adam steps that
    minimise the negative log-likelihood

    .. math::
        \mathcal{L}_{q}(\theta) = -\frac{1}{B} \sum_{i=1}^{B}
        \log q_\theta(\mathbf{y}_i | \mathbf{x}_i)

    on the *detached* samples (SEA's official trainer: 50 steps per training
    batch); :meth:`forward` returns the CLUB estimate (eq. 15), differentiable
    w.r.t. the samples. Keep :meth:`parameters` out of the model's optimizer (see
    ``Recommender.auxiliary_parameters``). The optimizer's state travels in
    ``state_dict()`` (:meth:`get_extra_state`), so a resumed run continues
    exactly.

    **Data-parallel training** (``torchrun``, see ``docs/distributed.md``). The
    estimator is left out of DDP's gradient all-reduce; instead, during a training step
    :meth:`fit` gathers the detached samples of all processes
    (:func:`pyg_multirec.distributed.gather_rows`, in rank order) and every process
    runs the same :obj:`steps` on the same global batch from the same state (broadcast
    from rank 0 at the start), so the estimator and its optimizer stay identical on every
    process (no gradient all-reduce inside the :obj:`steps` inner steps). The trainer
    checks every epoch that the parameters still agree.

    The inner steps run without autograd: the gradient of :math:`\mathcal{L}_q`
    w.r.t. the two small MLPs is closed-form, and all their parameters, gradients
    and Adam moments sit in one flat buffer updated by one fused Adam call, over
    preallocated work buffers (about twenty kernels per step instead of an
    autograd graph; the values are those of :meth:`CLUBEstimator.fit_step` with
    ``torch.optim.Adam(fused=True)`` up to floating-point rounding). With
    :obj:`cuda_graph=True` and CUDA inputs, the :obj:`steps` steps are captured
    once as a CUDA graph over buffers of a fixed number of rows (batches are
    padded with zero-weight rows, so each step computes exactly the loss and
    gradients of the unpadded batch) and replayed by one launch per call; the
    first call at each capacity runs eagerly. Inside :func:`torch.autocast`
    the inner steps still run in the inputs' precision. An optimizer other than
    a plain fused Adam (e.g. one assigned to :attr:`optimizer` by hand) is
    stepped through autograd instead.

    Args:
        x_dim (int): Size of each :math:`\mathbf{x}` sample.
        y_dim (int): Size of each :math:`\mathbf{y}` sample.
        hidden_channels (int): Hidden width of the estimator's MLPs.
        steps (int): Inner Adam steps per :meth:`fit` call.
        lr (float): Learning rate of the inner Adam.
        cuda_graph (bool, optional): Replay the inner steps as a CUDA graph on
            CUDA inputs. (default: :obj:`True`)

    Shapes:
        - **fit:** :math:`\mathbf{x}` :math:`(B, F_x)`, :math:`\mathbf{y}` :math:`(B, F_y)`
          → scalar (the last inner step's :math:`\mathcal{L}_q`, computed before that
          step's update)
        - **forward:** :math:`\mathbf{x}` :math:`(B, F_x)`, :math:`\mathbf{y}`
          :math:`(B, F_y)`, :math:`B \ge 2` → scalar
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        hidden_channels: int,
        steps: int,
        lr: float,
        cuda_graph: bool = True,
    ) -> None:
        super().__init__()
        check_count(steps, "'steps'")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"'lr' must be > 0 (got {lr!r})")
        self.steps = steps
        self.cuda_graph = bool(cuda_graph)
        self.estimator = CLUBEstimator(x_dim, y_dim, hidden_channels)
        self.optimizer = torch.optim.Adam(self.estimator.parameters(), lr=lr, fused=True)
        self._loop: Optional[ClosedFormFit] = None  # flat buffers of the inner loop
        self._graph: Optional[GraphedFit] = None  # its CUDA graph, on CUDA inputs

    def reset_parameters(self) -> None:
        r"""Resets the estimator and clears its optimizer's state."""
        self.estimator.reset_parameters()
        self.optimizer.state.clear()

    def fit(self, x: Tensor, y: Tensor) -> Tensor:
        r"""Runs :obj:`steps` optimizer steps of :math:`\mathcal{L}_q` on the detached
        samples; returns the last step's loss as a detached 0-d tensor (no host sync)."""
        self.estimator._check(x, y)
        # Data-parallel training: fit on the samples of every process (see the class doc).
        x, y = gather_rows(x.detach()), gather_rows(y.detach())
        params = list(self.estimator.parameters())
        if adam_settings(self.optimizer) is None or any(
            p.dtype != x.dtype or p.device != x.device for p in params
        ):  # another optimizer, or mismatched inputs (autograd raises the usual error)
            return self.estimator._fit_steps(x, y, self.optimizer, self.steps)
        loop = self._loop
        if loop is None or not loop.fits(self.estimator, self.optimizer, x):
            capacity = capacity_for(x.size(0), loop.capacity if loop is not None else 0)
            loop = self._loop = ClosedFormFit(self.estimator, self.optimizer, capacity, x)
            self._graph = None
        with torch.autocast(x.device.type, enabled=False):
            if self.cuda_graph and x.is_cuda and not torch.cuda.is_current_stream_capturing():
                if self._graph is None or not self._graph.matches(self.steps):
                    self._graph = GraphedFit(loop, self.steps)
                return self._graph(x, y)
            loop.load()
            loop.set_batch(x, y)
            loss = loop.run(self.steps)
            loop.store()
        return loss

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.estimator(x, y)  # SEA eq. 15

    def _apply(self, fn, recurse=True):  # .to() / .cuda() / .half(): buffers are stale
        self._loop, self._graph = None, None
        return super()._apply(fn, recurse)

    # The trainer copies every state_dict value as a tensor, so the optimizer state is kept
    # as the bytes of its torch.save serialisation (device-independent: capturable off).
    def get_extra_state(self) -> Tensor:
        state = self.optimizer.state_dict()
        state["param_groups"] = [{**g, "capturable": False} for g in state["param_groups"]]
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)

    def set_extra_state(self, state: Tensor) -> None:
        raw = io.BytesIO(state.cpu().numpy().tobytes())
        self.optimizer.load_state_dict(torch.load(raw, map_location="cpu", weights_only=True))

    def extra_repr(self) -> str:
        return f"steps={self.steps}, cuda_graph={self.cuda_graph}"
