import math

import pytest
import torch

from pyg_multirec.losses import SoloSimLoss
from tests.losses.helpers import align_two_views, assert_same_grads


def reference_solosim(x1, x2, tau, reduction="mean"):
    """SEA eq. 16 written out term by term."""
    batch = x1.size(0)
    terms = []
    for i in range(batch):
        sims = [torch.dot(x1[i], x2[j]) / (x1[i].norm() * x2[j].norm()) / tau for j in range(batch)]
        numerator = torch.exp(sims[i])
        denominator = sum(torch.exp(s) for s in sims)
        terms.append(-torch.log(numerator / denominator))
    out = torch.stack(terms)
    return {"mean": out.mean(), "sum": out.sum(), "none": out}[reduction]


def _views(batch=6, dim=5, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randn(batch, dim, generator=gen, dtype=dtype, requires_grad=True)
    x2 = torch.randn(batch, dim, generator=gen, dtype=dtype, requires_grad=True)
    return x1, x2


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_matches_reference_values_and_gradients(reduction, tau):
    x1, x2 = _views()
    out = SoloSimLoss(temperature=tau, reduction=reduction)(x1, x2)
    ref = reference_solosim(x1, x2, tau, reduction)
    torch.testing.assert_close(out, ref)
    assert_same_grads(out, ref, (x1, x2))


def test_one_directional_and_scale_invariant():
    x1, x2 = _views()
    loss_fn = SoloSimLoss()
    assert not torch.allclose(loss_fn(x1, x2), loss_fn(x2, x1))
    torch.testing.assert_close(loss_fn(3.0 * x1, 0.5 * x2), loss_fn(x1, x2))


def test_small_temperature_is_stable():
    x1, x2 = _views()
    out = SoloSimLoss(temperature=1e-3)(x1, x2)
    assert torch.isfinite(out)
    # identical views: the positive dominates and the loss vanishes
    assert SoloSimLoss(temperature=1e-3)(x1, x1).item() == pytest.approx(0.0, abs=1e-4)


def test_uniform_similarities_give_log_batch():
    x = torch.zeros(4, 3)
    x[:, 0] = 1.0  # all rows identical: every logit equal
    assert SoloSimLoss()(x, x).item() == pytest.approx(math.log(4))


def test_gradcheck_float64():
    x1, x2 = _views(batch=4, dim=3, dtype=torch.float64)
    assert torch.autograd.gradcheck(SoloSimLoss(temperature=0.5), (x1, x2))


def test_errors():
    x1, x2 = _views()
    with pytest.raises(ValueError, match="temperature"):
        SoloSimLoss(temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SoloSimLoss(temperature=-0.1)
    with pytest.raises(ValueError, match="reduction"):
        SoloSimLoss(reduction="max")
    with pytest.raises(ValueError, match="'x1' and 'x2' must have the same shape"):
        SoloSimLoss()(x1, x2[:5])
    with pytest.raises(ValueError, match="'x1' and 'x2' must have the same dtype and device"):
        SoloSimLoss()(x1, x2.double())
    with pytest.raises(ValueError, match="at least 2 rows"):
        SoloSimLoss()(x1[:1], x2[:1])
    with pytest.raises(TypeError, match="'x2' must be a floating-point"):
        SoloSimLoss()(x1, torch.ones(6, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="'x1' contains NaN"):
        SoloSimLoss()(torch.full((6, 5), float("nan")), x2)
    with pytest.raises(ValueError, match="'x1' must be a 2-dimensional"):
        SoloSimLoss()(torch.randn(6), torch.randn(6))


def test_it_trains_aligns_two_views():
    losses = align_two_views(SoloSimLoss(temperature=0.2), dims=(6, 7))
    assert losses[-1] < 0.5 * losses[0]
