import pytest
import torch

from pyg_multirec.losses import NegativeL2Distance
from tests.losses.helpers import assert_same_grads


def reference_distance(x, y, reduction="mean"):
    """SEA appendix A.4 (eq. 30) on unit vectors, row by row."""
    rows = [-((x[i] / x[i].norm() - y[i] / y[i].norm()) ** 2).sum() for i in range(x.size(0))]
    out = torch.stack(rows)
    return {"mean": out.mean(), "sum": out.sum(), "none": out}[reduction]


def _pair(batch=5, dim=4, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, dim, generator=gen, dtype=dtype, requires_grad=True)
    y = torch.randn(batch, dim, generator=gen, dtype=dtype, requires_grad=True)
    return x, y


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_reference_values_and_gradients(reduction):
    x, y = _pair()
    out = NegativeL2Distance(reduction=reduction)(x, y)
    ref = reference_distance(x, y, reduction)
    torch.testing.assert_close(out, ref)
    assert_same_grads(out, ref, (x, y))


def test_equals_cosine_form_bounded_and_scale_invariant():
    x, y = _pair()
    out = NegativeL2Distance(reduction="none")(x, y)
    cos = torch.nn.functional.cosine_similarity(x, y, dim=-1)
    torch.testing.assert_close(out, -(2 - 2 * cos))
    assert (out <= 0).all() and (out >= -4).all()
    torch.testing.assert_close(NegativeL2Distance()(10 * x, 0.1 * y), NegativeL2Distance()(x, y))
    assert NegativeL2Distance()(x, -x).item() == pytest.approx(-4.0)


def test_gradcheck_float64():
    x, y = _pair(batch=3, dim=3, dtype=torch.float64)
    assert torch.autograd.gradcheck(NegativeL2Distance(), (x, y))


def test_errors():
    x, y = _pair()
    with pytest.raises(ValueError, match="reduction"):
        NegativeL2Distance(reduction="avg")
    with pytest.raises(ValueError, match="'x' and 'y' must have the same shape"):
        NegativeL2Distance()(x, y[:, :3])
    with pytest.raises(ValueError, match="'x' and 'y' must have the same dtype and device"):
        NegativeL2Distance()(x.double(), y)
    with pytest.raises(TypeError, match="'y' must be a floating-point"):
        NegativeL2Distance()(x, torch.ones(5, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="'y' contains NaN"):
        NegativeL2Distance()(x, torch.full((5, 4), float("nan")))


def test_it_trains_pushes_parts_apart():
    torch.manual_seed(0)
    features = torch.randn(16, 6)
    generic, unique = torch.nn.Linear(6, 4), torch.nn.Linear(6, 4)
    params = list(generic.parameters()) + list(unique.parameters())
    opt = torch.optim.Adam(params, lr=0.05)
    loss_fn = NegativeL2Distance()
    losses = []
    for _ in range(60):
        loss = loss_fn(unique(features), generic(features))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0
    assert losses[-1] > -4.0 - 1e-5
