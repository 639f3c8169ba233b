"""Checks shared by the loss tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

ALIGN_STEPS = 60
ALIGN_LR = 0.05


def assert_same_grads(
    out: Tensor, ref: Tensor, inputs: Sequence[Tensor], **tolerances: float
) -> None:
    """The gradients of ``out.sum()`` and ``ref.sum()`` w.r.t. ``inputs`` agree (same dtype,
    within ``tolerances``: ``rtol``/``atol`` of :func:`torch.testing.assert_close`)."""
    grads = torch.autograd.grad(out.sum(), inputs)
    ref_grads = torch.autograd.grad(ref.sum(), inputs)
    for grad, ref_grad in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref_grad, **tolerances)


def align_two_views(loss_fn: Callable[[Tensor, Tensor], Tensor], dims=(6, 5)) -> list[float]:
    """Trains two linear projections of two views of one planted latent with ``loss_fn``
    (Adam); returns the loss of every step."""
    torch.manual_seed(0)
    latent = torch.randn(32, 4)
    view1, view2 = latent @ torch.randn(4, dims[0]), latent @ torch.randn(4, dims[1])
    proj1, proj2 = torch.nn.Linear(dims[0], 8), torch.nn.Linear(dims[1], 8)
    opt = torch.optim.Adam([*proj1.parameters(), *proj2.parameters()], lr=ALIGN_LR)
    losses = []
    for _ in range(ALIGN_STEPS):
        loss = loss_fn(proj1(view1), proj2(view2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
