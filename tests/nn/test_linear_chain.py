import pytest
import torch

from pyg_multirec.nn import linear_chain


def _maps(rows, f_in, f_mid, f_out, bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.double, requires_grad=True)

    return (rand(rows, f_in), rand(f_mid, f_in), rand(f_mid) if bias else None,
            rand(f_out, f_mid), rand(f_out) if bias else None)


def _reference(x, w1, b1, w2, b2):
    hidden = x @ w1.t() + (0 if b1 is None else b1)
    return hidden @ w2.t() + (0 if b2 is None else b2)


# (rows, f_in, f_mid, f_out): a wide middle read by a narrow map over many rows takes the
# composed order; few rows take the order through the middle.
COMPOSED = (40, 30, 30, 3)
THROUGH_MIDDLE = (2, 30, 30, 20)


@pytest.mark.parametrize("shape", [COMPOSED, THROUGH_MIDDLE])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_the_two_maps_applied_in_turn(shape, bias):
    args = _maps(*shape, bias=bias)
    out = linear_chain(*args)
    torch.testing.assert_close(out, _reference(*args), rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(out.square().sum(), [a for a in args if a is not None])
    ref = torch.autograd.grad(_reference(*args).square().sum(),
                              [a for a in args if a is not None])
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


def test_takes_the_cheaper_order():
    """The composed order applies one (f_out, f_in) map and never forms the (rows, f_mid)
    intermediate; the other order applies the two maps in turn."""
    x, w1, b1, w2, b2 = _maps(*COMPOSED)
    inner_calls = []
    hook = torch.nn.functional.linear

    def spy(inp, weight, bias=None):
        inner_calls.append(tuple(weight.shape))
        return hook(inp, weight, bias)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.functional, "linear", spy)
        linear_chain(x, w1, b1, w2, b2)
        assert inner_calls == [(COMPOSED[3], COMPOSED[1])]  # one map, (f_out, f_in)
        inner_calls.clear()
        linear_chain(*_maps(*THROUGH_MIDDLE))
        assert inner_calls == [(THROUGH_MIDDLE[2], THROUGH_MIDDLE[1]),
                               (THROUGH_MIDDLE[3], THROUGH_MIDDLE[2])]


def test_gradcheck():
    args = _maps(6, 5, 5, 2)
    assert torch.autograd.gradcheck(linear_chain, args)


def test_shapes_that_do_not_chain_are_an_error():
    x, w1, b1, w2, b2 = _maps(4, 5, 6, 3)
    with pytest.raises(ValueError, match="do not chain"):
        linear_chain(x, w1.t(), b1, w2, b2)
    with pytest.raises(ValueError, match="2-D"):
        linear_chain(x[0], w1, b1, w2, b2)
    with pytest.raises(ValueError, match=r"inner_bias must have shape \[6\]"):
        linear_chain(x, w1, b1[:1], w2, b2)
    with pytest.raises(ValueError, match=r"outer_bias must have shape \[3\]"):
        linear_chain(x, w1, b1, w2, b2.sum())  # a scalar would broadcast silently
