r"""The inner loop of :class:`~pyg_multirec.losses.FittedCLUB` as one CUDA graph (private).

On a GPU the inner loop is a long chain of tiny kernels (about twenty per step, see
:mod:`pyg_multirec.losses._club_fit`, repeated ``steps`` times per training batch), so its
cost is kernel-launch overhead. :class:`GraphedFit` captures all ``steps`` steps of a
:class:`~pyg_multirec.losses._club_fit.ClosedFormFit` over its fixed-size work buffers once,
and replays them by a single launch per call. Batches of any size up to the capacity are
padded with zero-weight rows (so each step computes exactly the loss and gradients of the
unpadded batch); a larger batch, other Adam hyper-parameters or another step count need a new
capture. Loading the parameters and the optimizer state into the flat buffers and storing
them back are ordinary device copies around the replay.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from pyg_multirec.losses._club_fit import ClosedFormFit, adam_settings


class GraphedFit:
    """``steps`` inner steps of ``fit`` (a :class:`ClosedFormFit` on CUDA buffers),
    captured as one CUDA graph."""

    def __init__(self, fit: ClosedFormFit, steps: int) -> None:
        self.fit, self.steps = fit, steps
        self.settings = adam_settings(fit.optimizer)
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.loss: Optional[Tensor] = None

    def matches(self, steps: int) -> bool:
        """Whether the captured graph still runs ``steps`` steps with the current Adam
        hyper-parameters (they are baked into the graph)."""
        return steps == self.steps and adam_settings(self.fit.optimizer) == self.settings

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """Loads the module's state and the padded batch, runs the steps (captured on the
        first call, replayed afterwards) and stores the result; returns the last step's
        loss as a 0-d tensor."""
        fit = self.fit
        fit.load()
        fit.set_batch(x, y, pad=True)
        if self.graph is None:
            loss = self._run_eager_then_capture()
        else:
            self.graph.replay()
            assert self.loss is not None
            loss = self.loss.clone()
        fit.store()
        return loss

    def _run_eager_then_capture(self) -> Tensor:
        # The first call's steps run eagerly on a side stream (which also warms up the
        # kernels' workspaces, as capture requires); capturing records without executing.
        device = self.fit.x.device
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            loss = self.fit.run(self.steps)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.loss = self.fit.run(self.steps)
        self.graph = graph
        return loss
