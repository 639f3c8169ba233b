import math

import pytest
import torch
from torch.distributions import Normal

from pyg_multirec.losses import CLUBEstimator, FittedCLUB

X_DIM, Y_DIM, HIDDEN = 3, 2, 8


def _log_q(club, x, y):
    """log q(y_j | x_i) for all pairs via torch.distributions: [B_x, B_y]."""
    mu, logvar = club.mu(x), club.logvar(x)
    dist = Normal(mu.unsqueeze(1), (0.5 * logvar).exp().unsqueeze(1))
    return dist.log_prob(y.unsqueeze(0)).sum(-1)


def reference_sampled(club, x, y, perm):
    """Cheng et al. CLUB-S / SEA eq. 15, one term per sample."""
    log_q = _log_q(club, x, y)
    terms = [log_q[i, i] - log_q[i, perm[i]] for i in range(x.size(0))]
    return torch.stack(terms).mean()


def reference_full(club, x, y):
    """Cheng et al. CLUB: mean positive log-density minus mean over all pairs."""
    log_q = _log_q(club, x, y)
    return log_q.diagonal().mean() - log_q.mean()


def _data(batch=7, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, X_DIM, generator=gen, dtype=dtype, requires_grad=True)
    y = torch.randn(batch, Y_DIM, generator=gen, dtype=dtype, requires_grad=True)
    return x, y


def _club(dtype=torch.float32):
    torch.manual_seed(0)
    return CLUBEstimator(X_DIM, Y_DIM, HIDDEN).to(dtype)


def test_log_likelihood_is_the_gaussian_log_density():
    club = _club()
    x, y = _data()
    out = club.log_likelihood(x, y)
    ref = _log_q(club, x, y).diagonal().mean()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(club.learning_loss(x, y), -ref)
    grads = torch.autograd.grad(out, [x, y, *club.parameters()])
    ref_grads = torch.autograd.grad(ref, [x, y, *club.parameters()])
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg)


@pytest.mark.parametrize("sampled", [True, False])
def test_forward_matches_reference_values_and_gradients(sampled):
    club = _club()
    x, y = _data()
    seed = 3
    out = club(x, y, sampled=sampled, generator=torch.Generator().manual_seed(seed))
    if sampled:
        perm = torch.randperm(x.size(0), generator=torch.Generator().manual_seed(seed))
        ref = reference_sampled(club, x, y, perm)
    else:
        ref = reference_full(club, x, y)
    torch.testing.assert_close(out, ref)
    inputs = [x, y, *club.parameters()]
    grads = torch.autograd.grad(out, inputs)
    ref_grads = torch.autograd.grad(ref, inputs)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg)


def test_sampled_uses_generator_deterministically():
    club = _club()
    x, y = _data(batch=16)
    a = club(x, y, generator=torch.Generator().manual_seed(5))
    b = club(x, y, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("sampled", [True, False])
def test_gradcheck_float64(sampled):
    club = _club(torch.float64)
    x, y = _data(batch=5, dtype=torch.float64)

    def fn(x, y):
        return club(x, y, sampled=sampled, generator=torch.Generator().manual_seed(1))

    assert torch.autograd.gradcheck(fn, (x, y))


def test_fit_step_fits_on_detached_samples():
    club = _club()
    x, y = _data(batch=64)
    before = club.learning_loss(x, y).item()
    opt = torch.optim.Adam(club.parameters(), lr=1e-2)
    first = club.fit_step(x, y, opt, steps=1)
    assert isinstance(first, float)
    assert first == pytest.approx(before, rel=1e-5)
    last = club.fit_step(x, y, opt, steps=50)
    assert last < before
    assert x.grad is None and y.grad is None  # the encoder side is untouched
    with torch.no_grad():  # still fits when called under no_grad
        after = club.fit_step(x, y, opt, steps=5)
    assert after < last


def _gaussian_pairs(num, dim, rho, gen):
    x = torch.randn(num, dim, generator=gen)
    y = rho * x + math.sqrt(1.0 - rho**2) * torch.randn(num, dim, generator=gen)
    return x, y


def test_upper_bounds_gaussian_mutual_information():
    dim, estimates = 2, []
    rhos = [0.0, 0.3, 0.6, 0.8]
    for rho in rhos:
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(1)
        club = CLUBEstimator(dim, dim, hidden_channels=16)
        opt = torch.optim.Adam(club.parameters(), lr=1e-2)
        club.fit_step(*_gaussian_pairs(512, dim, rho, gen), opt, steps=200)
        x, y = _gaussian_pairs(4096, dim, rho, gen)
        with torch.no_grad():
            full = club(x, y, sampled=False).item()
            sampled = club(x, y, generator=torch.Generator().manual_seed(2)).item()
        true_mi = -0.5 * dim * math.log(1.0 - rho**2)
        assert full >= true_mi - 0.02
        assert sampled >= true_mi - 0.02
        assert sampled == pytest.approx(full, abs=0.1)
        if rho == 0.0:
            assert abs(full) < 0.05
        if rho == 0.6:
            # With the exact q(y|x) = N(rho x, 1 - rho^2), CLUB = d rho^2 / (1 - rho^2):
            # checks the single factor 1/2 of the Gaussian log-density.
            assert full == pytest.approx(dim * rho**2 / (1.0 - rho**2), rel=0.2)
        estimates.append(full)
    assert all(a < b for a, b in zip(estimates, estimates[1:]))


def test_reset_parameters():
    club = _club()
    before = [p.detach().clone() for p in club.parameters()]
    torch.manual_seed(123)
    club.reset_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, club.parameters()))


def test_errors():
    club = _club()
    x, y = _data()
    opt = torch.optim.Adam(club.parameters())
    with pytest.raises(ValueError, match="hidden_channels"):
        CLUBEstimator(2, 2, 0)
    with pytest.raises(ValueError, match="'x' must have 3 columns"):
        club(torch.randn(7, 4), y)
    with pytest.raises(ValueError, match="'y' must have 2 columns"):
        club(x, torch.randn(7, 3))
    with pytest.raises(ValueError, match="same batch size"):
        club(x, torch.randn(6, Y_DIM))
    with pytest.raises(ValueError, match="'x' needs at least 2 rows"):
        club(x[:1], y[:1])
    with pytest.raises(ValueError, match="'x' must be a 2-dimensional"):
        club(torch.randn(X_DIM), y)
    with pytest.raises(TypeError, match="'y' must be a floating-point"):
        club(x, torch.ones(7, Y_DIM, dtype=torch.long))
    with pytest.raises(ValueError, match="'x' contains NaN"):
        club.log_likelihood(torch.full((7, X_DIM), float("nan")), y)
    with pytest.raises(ValueError, match="steps"):
        club.fit_step(x, y, opt, steps=0)
    with pytest.raises(TypeError, match="optimizer"):
        club.fit_step(x, y, None)


def test_it_trains_encoder_reduces_estimated_information():
    # Alternate fitting q (fit_step) with an encoder that minimises the CLUB estimate.
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(256, 2, generator=gen)
    encoder = torch.nn.Linear(2, 2)
    club = CLUBEstimator(2, 2, hidden_channels=16)
    club_opt = torch.optim.Adam(club.parameters(), lr=1e-2)
    enc_opt = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    estimates, initial_norm = [], encoder.weight.norm().item()
    for _ in range(40):
        y = encoder(base)
        club.fit_step(base, y, club_opt, steps=5)
        mi = club(base, y, sampled=False)
        enc_opt.zero_grad()
        mi.backward()
        enc_opt.step()
        estimates.append(mi.item())
    assert estimates[-1] < 0.5 * max(estimates)
    assert encoder.weight.norm().item() < 0.5 * initial_norm  # y depends less on x


# ---- FittedCLUB: the estimator with its own optimizer (eager and CUDA-graph paths) ----------
CUDA = torch.cuda.is_available()


def _fitted(cuda_graph=True, steps=4, seed=0, device="cpu"):
    torch.manual_seed(seed)
    return FittedCLUB(X_DIM, Y_DIM, HIDDEN, steps=steps, lr=1e-2, cuda_graph=cuda_graph).to(device)


def test_fitted_club_fit_equals_fit_step():
    fitted = _fitted()
    torch.manual_seed(0)
    club = CLUBEstimator(X_DIM, Y_DIM, HIDDEN)
    opt = torch.optim.Adam(club.parameters(), lr=1e-2, fused=True)
    x, y = _data(batch=9)
    loss = fitted.fit(x, y)
    expected = club.fit_step(x, y, opt, steps=4)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and not loss.requires_grad
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    for p, q in zip(fitted.estimator.parameters(), club.parameters()):
        torch.testing.assert_close(p, q)
    assert x.grad is None and y.grad is None  # fitted on detached samples
    assert fitted.optimizer.state_dict()["state"][0]["step"] == 4


# ---- the closed-form inner loop (no autograd, flat buffers, one fused Adam) --------------
def _closed_form(estimator, optimizer, capacity, x, y, pad):
    from pyg_multirec.losses._club_fit import ClosedFormFit

    loop = ClosedFormFit(estimator, optimizer, capacity, x.detach())
    loop.load()
    loop.set_batch(x.detach(), y.detach(), pad=pad)
    return loop


@pytest.mark.parametrize("pad", [False, True])
def test_closed_form_gradients_match_autograd(pad):
    # One step's loss and gradients (before the update) against autograd on the same
    # parameters; with pad=True the batch is padded to 16 rows of weight zero.
    dtype = torch.float64
    club = _club(dtype)
    x, y = _data(batch=11, dtype=dtype)
    opt = torch.optim.Adam(club.parameters(), lr=1e-2, fused=True)
    loss_ref = club.learning_loss(x, y)
    grads_ref = torch.autograd.grad(loss_ref, list(club.parameters()))
    from pyg_multirec.losses._club_fit import estimator_parameters

    by_id = {id(p): g for p, g in zip(club.parameters(), grads_ref)}
    loop = _closed_form(club, opt, 16, x, y, pad)
    assert loop.active == (16 if pad else 11)
    if pad:
        assert loop.weight.sum().item() == pytest.approx(1.0)
        assert (loop.weight[11:] == 0).all() and (loop.x[11:] == 0).all()
    loss = loop.run(1)
    torch.testing.assert_close(loss, loss_ref.detach(), rtol=1e-12, atol=1e-12)
    for p, g in zip(estimator_parameters(club), loop.gradients()):
        torch.testing.assert_close(g, by_id[id(p)], rtol=1e-12, atol=1e-12)


def _reference_adam_loop(club, x, y, steps, lr):
    """The autograd loop with torch.optim.Adam (the default for-each kernel)."""
    opt = torch.optim.Adam(club.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = club.learning_loss(x, y)
        loss.backward()
        opt.step()
    return loss.detach(), opt


@pytest.mark.parametrize(
    "dtype, tol", [(torch.float64, 1e-11), (torch.float32, 2e-5)], ids=["float64", "float32"]
)
@pytest.mark.parametrize("pad", [False, True])
def test_closed_form_matches_autograd_adam_after_50_steps(dtype, tol, pad):
    steps, lr = 50, 1e-2
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(37, X_DIM, generator=gen, dtype=dtype)
    y = (x[:, :Y_DIM] + 0.5 * torch.randn(37, Y_DIM, generator=gen, dtype=dtype)).to(dtype)
    ours, ref = _club(dtype), _club(dtype)
    opt = torch.optim.Adam(ours.parameters(), lr=lr, fused=True)
    loop = _closed_form(ours, opt, 64, x, y, pad)
    loss = loop.run(steps)
    loop.store()
    loss_ref, opt_ref = _reference_adam_loop(ref, x, y, steps, lr)
    torch.testing.assert_close(loss, loss_ref, rtol=tol, atol=tol)
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=tol, atol=tol)
    assert not torch.equal(ours.mu[0].weight, _club(dtype).mu[0].weight)  # it did move
    # the optimizer state is the one torch.optim.Adam leaves (and continues from)
    state, state_ref = opt.state_dict()["state"], opt_ref.state_dict()["state"]
    for i in state_ref:
        assert state[i]["step"].item() == state_ref[i]["step"].item() == steps
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(state[i][key], state_ref[i][key], rtol=tol, atol=tol)
    loop.load()  # a second call continues from the stored state
    loop.set_batch(x, y, pad=pad)
    loop.run(3)
    loop.store()
    opt_ref.zero_grad()
    for _ in range(3):
        opt_ref.zero_grad()
        ref.learning_loss(x, y).backward()
        opt_ref.step()
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=tol, atol=tol)


def test_fitted_club_varying_batch_sizes_match_autograd():
    # Buffers sized for the largest batch so far, cut to each batch's rows (CPU path).
    fitted = _fitted(steps=5)
    torch.manual_seed(0)
    club = CLUBEstimator(X_DIM, Y_DIM, HIDDEN)
    opt = torch.optim.Adam(club.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(2)
    for rows in (9, 1500, 4, 700):
        x, y = torch.randn(rows, X_DIM, generator=gen), torch.randn(rows, Y_DIM, generator=gen)
        loss = fitted.fit(x, y)
        expected = club.fit_step(x, y, opt, steps=5)
        assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert fitted._loop is not None and fitted._loop.capacity == 2048
    for p, q in zip(fitted.estimator.parameters(), club.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_fitted_club_other_optimizer_and_autocast():
    # An optimizer the closed form does not reproduce is stepped through autograd.
    fitted, plain = _fitted(), _fitted()
    fitted.optimizer = torch.optim.SGD(fitted.estimator.parameters(), lr=0.1)
    plain_opt = torch.optim.SGD(plain.estimator.parameters(), lr=0.1)
    x, y = _data(batch=10)
    fitted.fit(x, y)
    plain.estimator.fit_step(x, y, plain_opt, steps=4)
    for p, q in zip(fitted.estimator.parameters(), plain.estimator.parameters()):
        torch.testing.assert_close(p, q)
    # Under autocast the inner steps keep the inputs' precision.
    a, b = _fitted(), _fitted()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a.fit(x, y)
    b.fit(x, y)
    for p, q in zip(a.estimator.parameters(), b.estimator.parameters()):
        assert p.dtype == torch.float32
        torch.testing.assert_close(p, q)


def test_fitted_club_state_round_trip_continues_exactly():
    first = _fitted()
    x, y = _data(batch=8)
    first.fit(x, y)
    state = {k: v.detach().clone() for k, v in first.state_dict().items()}
    second = _fitted(seed=1)
    second.load_state_dict(state)
    first.fit(x, y)
    second.fit(x, y)
    for p, q in zip(first.parameters(), second.parameters()):
        torch.testing.assert_close(p, q)
    # the saved optimizer state is device-independent (capturable off)
    second.reset_parameters()
    assert second.optimizer.state_dict()["state"] == {}


def test_fitted_club_errors():
    with pytest.raises(ValueError, match="'steps' must be a positive integer"):
        FittedCLUB(X_DIM, Y_DIM, HIDDEN, steps=0, lr=1e-3)
    with pytest.raises(ValueError, match="'lr' must be > 0"):
        FittedCLUB(X_DIM, Y_DIM, HIDDEN, steps=1, lr=0.0)
    fitted = _fitted()
    with pytest.raises(ValueError, match="'x' must have 3 columns"):
        fitted.fit(torch.randn(4, 2), torch.randn(4, Y_DIM))
    with pytest.raises(ValueError, match="same batch size"):
        fitted.fit(torch.randn(4, X_DIM), torch.randn(5, Y_DIM))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_fitted_club_cuda_graph_matches_eager():
    graphed, eager = _fitted(device="cuda"), _fitted(cuda_graph=False, device="cuda")
    torch.manual_seed(0)
    club = CLUBEstimator(X_DIM, Y_DIM, HIDDEN).cuda()  # the autograd loop, on the GPU
    opt = torch.optim.Adam(club.parameters(), lr=1e-2, fused=True)
    gen = torch.Generator().manual_seed(0)
    # varying batch sizes, one beyond the first capacity (a second capture)
    for rows in (700, 1000, 3, 2500, 1800):
        x = torch.randn(rows, X_DIM, generator=gen).cuda()
        y = torch.randn(rows, Y_DIM, generator=gen).cuda()
        a, b = graphed.fit(x, y), eager.fit(x, y)
        c = club.fit_step(x, y, opt, steps=4)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert a.item() == pytest.approx(c, rel=1e-4)
        for p, q, r in zip(graphed.estimator.parameters(), eager.estimator.parameters(),
                           club.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(p, r, rtol=1e-4, atol=1e-5)
    assert graphed._graph is not None and graphed._graph.graph is not None
    assert graphed._loop is not None and graphed._loop.capacity == 4096
    # state round trip onto a fresh module: the graph runs on the loaded state
    state = {k: v.detach().to("cpu", copy=True) for k, v in graphed.state_dict().items()}
    again = _fitted(seed=3, device="cuda")
    again.load_state_dict(state)
    x, y = torch.randn(900, X_DIM).cuda(), torch.randn(900, Y_DIM).cuda()
    expected = graphed.fit(x, y)
    torch.testing.assert_close(again.fit(x, y), expected)
    # the eager twin takes the same step, so that both start the next check from one state
    torch.testing.assert_close(eager.fit(x, y), expected, rtol=1e-4, atol=1e-5)
    # a new learning rate is baked into a new capture
    for f in (graphed, eager):
        f.optimizer.param_groups[0]["lr"] = 1e-3
    torch.testing.assert_close(graphed.fit(x, y), eager.fit(x, y), rtol=1e-4, atol=1e-5)
    for p, q in zip(graphed.estimator.parameters(), eager.estimator.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_value_checks_switch_only_skips_the_nan_scan():
    from pyg_multirec.losses import value_checks

    club = CLUBEstimator(X_DIM, Y_DIM, HIDDEN)
    x, y = _data(batch=4)
    bad = x.detach().clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        club(bad, y)
    with value_checks(False):
        assert torch.isnan(club(bad, y))  # scan skipped: NaN flows into the loss
        with pytest.raises(ValueError, match="must have 3 columns"):  # shapes still checked
            club(bad[:, :2], y)
    with pytest.raises(ValueError, match="NaN or infinite"):  # restored after the block
        club(bad, y)
