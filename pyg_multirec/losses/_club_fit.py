r"""The inner loop of :class:`~pyg_multirec.losses.FittedCLUB` without autograd (private).

Each inner step fits the CLUB estimator's variational network
:math:`q_\theta(\mathbf{y} | \mathbf{x}) = \mathcal{N}(\boldsymbol{\mu}(\mathbf{x}),
\operatorname{diag} e^{\mathbf{t}(\mathbf{x})})` by one Adam step on the weighted negative
log-likelihood

.. math::
    \mathcal{L}_q = \sum_i w_i \sum_d \tfrac{1}{2} \left( r_{id}^2 e^{-t_{id}} + t_{id}
    + \log 2\pi \right), \qquad \mathbf{r}_i = \mathbf{y}_i - \boldsymbol{\mu}(\mathbf{x}_i),

(:math:`w_i = 1/B` on the :math:`B` rows of a batch, :math:`0` on padding rows). Its
gradient w.r.t. the two heads is closed-form,

.. math::
    \frac{\partial \mathcal{L}_q}{\partial \mu_{id}} = -w_i r_{id} e^{-t_{id}}, \qquad
    \frac{\partial \mathcal{L}_q}{\partial t_{id}} = \tfrac{1}{2} w_i
    \left(1 - r_{id}^2 e^{-t_{id}}\right),

and is carried back through the :math:`\tanh` and the two :math:`F_x \to H \to F_y` MLPs by
hand. The two MLPs run side by side: their first layers as one :math:`(2H, F_x)` product
(hidden units kept transposed, :math:`(2H, B)`, so the long batch dimension is the one the
BLAS kernels like), their second layers as one batched product of two maps. Parameters,
gradients and Adam moments live in flat buffers, so the update is one fused Adam call
(``torch._fused_adam_``, the kernel behind ``torch.optim.Adam(fused=True)``), and no step
allocates: each step is about twenty kernels over preallocated buffers, the same on the CPU
and inside a CUDA graph (:mod:`pyg_multirec.losses._cuda_graph` captures
:meth:`ClosedFormFit.run`). The values are those of the autograd loop up to floating-point
rounding (``tests/losses/test_club.py`` compares them after 50 steps).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor
from torch.optim import Optimizer

if TYPE_CHECKING:  # pragma: no cover
    from pyg_multirec.losses.club import CLUBEstimator

HALF = 0.5
LOG_2PI = math.log(2.0 * math.pi)
NUM_HEADS = 2  # the mean and the log-variance MLPs
FIRST, SECOND = 0, 2  # indices of the two Linear layers inside each head's Sequential
SECOND_WEIGHTS = (4, 5)  # positions of the second-layer weights in estimator_parameters()
MIN_CAPACITY = 1024  # rows of the first work buffers; they double when a batch is larger
GROWTH = 2


def estimator_parameters(estimator: CLUBEstimator) -> list[Tensor]:
    r"""The parameters in the order of the flat buffer: both first-layer weights, both
    first-layer biases, both second-layer weights, both second-layer biases (mean head,
    then log-variance head)."""
    heads = (estimator.mu, estimator.logvar)
    return [
        getattr(head[layer], name)
        for layer in (FIRST, SECOND)
        for name in ("weight", "bias")
        for head in heads
    ]


def adam_settings(optimizer: Optimizer) -> Optional[tuple[float, float, float, float, float]]:
    """``(lr, beta1, beta2, eps, weight_decay)`` of a fused, plain ``torch.optim.Adam`` with
    one parameter group, or ``None`` for anything :class:`ClosedFormFit` does not reproduce
    (other optimizers, AMSGrad, maximise, tensor hyper-parameters, ...)."""
    if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    if not group.get("fused") or group.get("amsgrad") or group.get("maximize"):
        return None
    if group.get("differentiable") or group.get("decoupled_weight_decay"):
        return None
    (beta1, beta2), values = group["betas"], (group["lr"], group["eps"], group["weight_decay"])
    if any(isinstance(v, Tensor) for v in (beta1, beta2, *values)):
        return None
    return float(group["lr"]), float(beta1), float(beta2), float(group["eps"]), float(
        group["weight_decay"]
    )


def capacity_for(rows: int, previous: int = 0) -> int:
    """Rows of the work buffers for a batch of ``rows``: ``MIN_CAPACITY`` (or the previous
    capacity), doubled until the batch fits."""
    capacity = max(previous, MIN_CAPACITY)
    while capacity < rows:
        capacity *= GROWTH
    return capacity


class ClosedFormFit:
    r"""Flat parameters, gradients and Adam moments of a :class:`CLUBEstimator`, with work
    buffers for up to ``capacity`` rows.

    :meth:`load` copies the estimator's parameters and its optimizer's state into the flat
    buffers, :meth:`set_batch` the samples into the work buffers, :meth:`run` takes the
    inner steps, :meth:`store` writes the result back into the module and the optimizer, so
    that the module, ``state_dict()`` and the autograd path see what ``torch.optim.Adam``
    would have left. All of it runs on the device (no host synchronisation)."""

    def __init__(self, estimator: CLUBEstimator, optimizer: Optimizer, capacity: int,
                 like: Tensor) -> None:
        self.estimator, self.optimizer, self.capacity = estimator, optimizer, capacity
        self.device, self.dtype = like.device, like.dtype
        fx, fy, hid = estimator.x_dim, estimator.y_dim, estimator.hidden_channels
        self.params = estimator_parameters(estimator)
        sizes = [p.numel() for p in self.params]
        new = {"device": like.device, "dtype": like.dtype}
        self.flat = torch.zeros(sum(sizes), **new)
        self.grad = torch.zeros_like(self.flat)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.step = torch.zeros((), dtype=torch.float32, device=like.device)  # as fused Adam
        self.one = torch.ones((), **new)
        self.minus_one = -self.one
        # Views shaped like the parameters (for load / store), and one per layer (the step).
        self._flat_views = self._param_views(self.flat, sizes)
        self._avg_views = self._param_views(self.exp_avg, sizes)
        self._avg_sq_views = self._param_views(self.exp_avg_sq, sizes)
        self._grad_views = self._param_views(self.grad, sizes)
        self.w1, self.b1, self.w2t, self.b2 = _layers(self.flat, fx, fy, hid)
        self.g_w1, self.g_b1, self.g_w2t, self.g_b2 = _layers(self.grad, fx, fy, hid)
        # Work buffers (rows beyond the active ones are padding).
        self.active = 0
        self.x = torch.zeros(capacity, fx, **new)
        self.y = torch.zeros(capacity, fy, **new)
        self.count = 0  # rows of the batch (the rest is padding)
        self.weight = torch.zeros(capacity, 1, **new)  # w_i = 1 / B on the batch, 0 on padding
        self.mask = torch.zeros(capacity, 1, **new)  # 1 on the batch, 0 on padding
        # -1 / B on the mean head's entries of the flat gradient, -1 / (2B) on the others'
        self.grad_scale = torch.zeros_like(self.flat)
        self._head_of_entry = torch.cat([
            torch.full((p.numel(),), float(i % NUM_HEADS), **new)
            for i, p in enumerate(self.params)
        ])
        self.hidden = torch.zeros(NUM_HEADS * hid, capacity, **new)  # transposed: (2H, B)
        self.grad_hidden = torch.zeros(NUM_HEADS * hid, capacity, **new)
        self.out = torch.zeros(NUM_HEADS, capacity, fy, **new)  # 2 mu, then -t (see _step)
        self.grad_out = torch.zeros(NUM_HEADS, capacity, fy, **new)  # dL/dmu, dL/d(pre-tanh)
        self.resid = torch.zeros(capacity, fy, **new)  # r = y - mu
        self.inv_var = torch.zeros(capacity, fy, **new)  # e^{-t}

    def _param_views(self, flat: Tensor, sizes: list[int]) -> list[Tensor]:
        """Views of ``flat`` shaped like the parameters (the second-layer weights are
        stored transposed, :math:`(H, F_y)`, so theirs are transposed views)."""
        views = [chunk.view_as(p) for p, chunk in zip(self.params, flat.split(sizes))]
        for i in SECOND_WEIGHTS:
            views[i] = views[i].reshape(self.params[i].t().shape).t()
        return views

    def gradients(self) -> list[Tensor]:
        """The last step's gradients, shaped like (and in the order of) the parameters."""
        return self._grad_views

    def fits(self, estimator: CLUBEstimator, optimizer: Optimizer, x: Tensor) -> bool:
        """Whether these buffers serve ``estimator``, ``optimizer`` and a batch like ``x``."""
        return (
            x.size(0) <= self.capacity
            and x.dtype == self.dtype
            and x.device == self.device
            and optimizer is self.optimizer
            and all(p is q for p, q in zip(estimator_parameters(estimator), self.params))
        )

    # ---- data in and out -----------------------------------------------------------------
    def set_batch(self, x: Tensor, y: Tensor, pad: bool = False) -> None:
        """Copies a batch into the work buffers. With ``pad``, every step covers all
        ``capacity`` rows (fixed shapes, as a CUDA graph needs) and the rows past the batch
        are zero with weight zero; otherwise the steps cover the batch's rows only."""
        count = self.count = x.size(0)
        self.active = self.capacity if pad else count
        self.x[:count].copy_(x)
        self.y[:count].copy_(y)
        self.weight[:count].fill_(1.0 / count)
        self.mask[:count].fill_(1.0)
        if pad and count < self.capacity:
            self.x[count:].zero_()
            self.y[count:].zero_()
            self.weight[count:].zero_()
            self.mask[count:].zero_()
        # -w for the mean head (entry 0), -w/2 for the log-variance head (entry 1)
        torch.mul(self._head_of_entry, HALF / count, out=self.grad_scale).sub_(1.0 / count)

    def load(self) -> None:
        """Parameters and Adam state of the module into the flat buffers."""
        with torch.no_grad():
            torch._foreach_copy_(self._flat_views, self.params)
            states = [self.optimizer.state.get(p) for p in self.params]
            if all(s is not None and "exp_avg" in s for s in states):
                torch._foreach_copy_(self._avg_views, [s["exp_avg"] for s in states])
                torch._foreach_copy_(self._avg_sq_views, [s["exp_avg_sq"] for s in states])
                self.step.copy_(states[0]["step"])
            else:  # no step taken yet: Adam's initial state
                self.exp_avg.zero_()
                self.exp_avg_sq.zero_()
                self.step.zero_()

    def store(self) -> None:
        """The flat buffers back into the module's parameters and the Adam state."""
        with torch.no_grad():
            torch._foreach_copy_(self.params, self._flat_views)
            state = self.optimizer.state
            for p, avg, avg_sq in zip(self.params, self._avg_views, self._avg_sq_views):
                entry = state.get(p)
                if entry is None or "exp_avg" not in entry:
                    state[p] = {
                        "step": self.step.clone(),
                        "exp_avg": avg.clone(memory_format=torch.contiguous_format),
                        "exp_avg_sq": avg_sq.clone(memory_format=torch.contiguous_format),
                    }
                else:
                    entry["step"].copy_(self.step)
                    entry["exp_avg"].copy_(avg)
                    entry["exp_avg_sq"].copy_(avg_sq)

    # ---- the inner steps -----------------------------------------------------------------
    def run(self, steps: int) -> Tensor:
        r"""``steps`` inner steps on the loaded batch; returns the last step's
        :math:`\mathcal{L}_q` (before its update) as a 0-d tensor."""
        settings = adam_settings(self.optimizer)
        assert settings is not None and self.active > 0
        buffers = _Active(self, self.active)
        loss = None
        with torch.no_grad():
            for i in range(steps):
                loss = _step(buffers, settings, want_loss=i == steps - 1)
        assert loss is not None
        return loss


def _layers(flat: Tensor, fx: int, fy: int, hid: int) -> tuple[Tensor, ...]:
    """``(W_1, b_1, W_2^T, b_2)`` of both heads as views of a flat buffer."""
    n1, n2 = NUM_HEADS * hid * fx, NUM_HEADS * fy * hid
    w1, b1, w2, b2 = flat.split([n1, NUM_HEADS * hid, n2, NUM_HEADS * fy])
    return (w1.view(NUM_HEADS * hid, fx), b1.view(NUM_HEADS * hid, 1),
            w2.view(NUM_HEADS, hid, fy), b2.view(NUM_HEADS, 1, fy))


class _Active:
    """The work buffers of :class:`ClosedFormFit` cut to the first ``rows`` rows, with the
    views a step uses made once."""

    def __init__(self, fit: ClosedFormFit, rows: int) -> None:
        hid = fit.estimator.hidden_channels
        self.fit, self.rows, self.y_dim = fit, rows, fit.estimator.y_dim
        self.padded = rows > fit.count  # rows of weight zero to cancel
        self.x, self.y, self.resid, self.inv_var = (
            getattr(fit, name)[:rows] for name in ("x", "y", "resid", "inv_var")
        )
        self.mask = fit.mask[:rows]
        self.x_t = self.x.t()
        self.hidden, self.grad_hidden = fit.hidden[:, :rows], fit.grad_hidden[:, :rows]
        self.heads = self.hidden.view(NUM_HEADS, hid, rows)  # (2, H, B)
        self.heads_t = self.heads.transpose(1, 2)  # (2, B, H)
        self.grad_heads = self.grad_hidden.view(NUM_HEADS, hid, rows)
        self.out, self.grad_out = fit.out[:, :rows], fit.grad_out[:, :rows]
        self.grad_out_t = self.grad_out.transpose(1, 2)
        self.two_mu, self.t = self.out[0], self.out[1]
        self.grad_mu, self.grad_t = self.grad_out[0], self.grad_out[1]


def _step(b: _Active, settings: tuple[float, ...], want_loss: bool) -> Optional[Tensor]:
    r"""One inner step: closed-form forward and backward, then one fused Adam update.

    The backward pass is linear in :math:`\partial \mathcal{L}_q / \partial(\mu, t)`, so it
    runs on :math:`-\partial \mathcal{L}_q / (w_i \, \partial \mu) = r e^{-t}` and
    :math:`-2 \partial \mathcal{L}_q / (w_i \, \partial t) = r^2 e^{-t} - 1` and the flat
    gradient is scaled once at the end (by :math:`-w` for the mean head's parameters,
    :math:`-w/2` for the log-variance head's; padding rows are zeroed first)."""
    f = b.fit
    # Forward. Both first layers at once, transposed: (2H, B) = W_1 x^T + b_1.
    torch.addmm(f.b1, f.w1, b.x_t, out=b.hidden)
    b.hidden.relu_()
    # Both second layers, doubled (exact): 2 mu and 2 s, with t = tanh(s) the log-variance.
    torch.baddbmm(f.b2, b.heads_t, f.w2t, beta=2.0, alpha=2.0, out=b.out)
    # -t = 1 - 2 sigmoid(2 s) (the sigmoid kernel is several times faster than tanh's);
    # the step needs t only through e^{-t}, t^2 and (for the loss) t itself.
    neg_t = b.t
    torch.add(f.one, torch.sigmoid(neg_t, out=neg_t), alpha=-2.0, out=neg_t)
    torch.exp(neg_t, out=b.inv_var)  # e^{-t}
    torch.add(b.y, b.two_mu, alpha=-HALF, out=b.resid)  # r = y - mu
    torch.mul(b.resid, b.inv_var, out=b.grad_mu)  # r e^{-t}
    torch.addcmul(f.minus_one, b.resid, b.grad_mu, out=b.grad_t)  # r^2 e^{-t} - 1
    loss = None
    if want_loss:  # L_q before this step's update: sum over d of r^2 e^{-t} + t + log 2 pi
        per_row = (b.grad_t - neg_t).sum(dim=1, keepdim=True).add_(b.y_dim * (1.0 + LOG_2PI))
        loss = HALF * (f.weight[: b.rows] * per_row).sum()
    torch.ops.aten.tanh_backward.grad_input(b.grad_t, neg_t, grad_input=b.grad_t)  # (1 - t^2)
    if b.padded:
        b.grad_out.mul_(b.mask)
    # Second layers: weights (transposed), biases, hidden units (transposed).
    torch.bmm(b.heads, b.grad_out, out=f.g_w2t)
    torch.sum(b.grad_out, dim=1, keepdim=True, out=f.g_b2)
    torch.bmm(f.w2t, b.grad_out_t, out=b.grad_heads)
    torch.ops.aten.threshold_backward.grad_input(
        b.grad_hidden, b.hidden, 0.0, grad_input=b.grad_hidden
    )
    # First layers.
    torch.mm(b.grad_hidden, b.x, out=f.g_w1)
    torch.sum(b.grad_hidden, dim=1, keepdim=True, out=f.g_b1)
    f.grad.mul_(f.grad_scale)
    # Adam (as torch.optim.Adam(fused=True): the step count first, then the fused update)
    lr, beta1, beta2, eps, weight_decay = settings
    f.step.add_(1)
    torch._fused_adam_(
        [f.flat], [f.grad], [f.exp_avg], [f.exp_avg_sq], [], [f.step],
        amsgrad=False, lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps,
        maximize=False,
    )
    return loss
