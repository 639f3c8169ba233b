import copy
import itertools

import pytest
import torch
import torch.nn.functional as F

from pyg_multirec.losses import InfoNCELoss, NegativeL2Distance, SoloSimLoss
from pyg_multirec.nn import SeparateLearning

WIDTHS = [8, 7, 10]  # an odd width: generic 3, unique 4
BATCH = 12


def _inputs(widths=WIDTHS, batch=BATCH, seed=0, dtype=torch.float):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, w, generator=gen, dtype=dtype) for w in widths]


def _module(seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs.setdefault("club_steps", 3)
    kwargs.setdefault("club_lr", 1e-2)
    return SeparateLearning(kwargs.pop("widths", WIDTHS), **kwargs)


def test_split_into_generic_and_unique_halves():
    module = _module()
    xs = _inputs()
    generic, unique = module.split(xs)
    for x, g, u, w in zip(xs, generic, unique, WIDTHS):
        assert g.shape == (BATCH, w // 2) and u.shape == (BATCH, w - w // 2)
        torch.testing.assert_close(torch.cat([g, u], dim=1), x)
        torch.testing.assert_close(g, x[:, : w // 2])


@pytest.mark.parametrize("align, loss_cls", [("solosim", SoloSimLoss), ("infonce", InfoNCELoss)])
def test_alignment_matches_the_losses_called_directly(align, loss_cls):
    module = _module(align=align, distance="none", tau=0.3).double()
    xs = _inputs(dtype=torch.double)
    terms = module(xs)
    assert set(terms) == {"align"}
    views = [head(x[:, : w // 2]) for head, x, w in zip(module.align_heads, xs, WIDTHS)]
    loss = loss_cls(temperature=0.3)
    pairs = itertools.combinations(range(len(WIDTHS)), 2)
    expected = torch.stack([loss(views[a], views[b]) for a, b in pairs]).mean()  # eq. 16
    torch.testing.assert_close(terms["align"], expected)
    assert type(module.align_loss) is loss_cls
    # SoloSim by the formula: -log softmax of the cosine similarities over the second view
    z1, z2 = F.normalize(views[0], dim=-1), F.normalize(views[1], dim=-1)
    solosim = -torch.log_softmax(z1 @ z2.t() / 0.3, dim=1).diag().mean()
    infonce = (solosim - torch.log_softmax(z1 @ z2.t() / 0.3, dim=0).diag().mean()) / 2
    reference = solosim if align == "solosim" else infonce
    torch.testing.assert_close(module.align_loss(views[0], views[1]), reference)


def test_negative_l2_distancing_matches_the_formula():
    module = _module(align="none", distance="l2").double()
    xs = _inputs(dtype=torch.double)
    terms = module(xs)
    assert set(terms) == {"distance"}
    per_modality = []
    for x, w, gmap, umap in zip(xs, WIDTHS, module.generic_maps, module.unique_maps):
        g = F.normalize(gmap(x[:, : w // 2]), dim=-1)
        u = F.normalize(umap(x[:, w // 2 :]), dim=-1)
        per_modality.append(-(u - g).pow(2).sum(-1).mean())  # SEA eq. 30
        torch.testing.assert_close(
            NegativeL2Distance()(umap(x[:, w // 2 :]), gmap(x[:, : w // 2])), per_modality[-1])
    torch.testing.assert_close(terms["distance"], torch.stack(per_modality).mean())
    assert module.auxiliary_parameters() == []


def test_club_distancing_matches_eq15_and_fits_its_estimator():
    module = _module(align="none", distance="club")
    xs = _inputs()
    before = [p.detach().clone() for p in module.auxiliary_parameters()]
    module.eval()  # no fitting: the estimate alone
    torch.manual_seed(5)
    terms = module(xs)
    assert all(torch.equal(a, b) for a, b in zip(before, module.auxiliary_parameters()))
    torch.manual_seed(5)
    est = module.club.estimator
    per_modality = []
    with torch.no_grad():
        for x, w, gmap, umap in zip(xs, WIDTHS, module.generic_maps, module.unique_maps):
            g, u = gmap(x[:, : w // 2]), umap(x[:, w // 2 :])
            perm = torch.randperm(BATCH)
            mu, inv_var = est.mu(g), (-est.logvar(g)).exp()
            per_modality.append((((u[perm] - mu).pow(2) - (u - mu).pow(2)) * inv_var / 2)
                                .sum(-1).mean())
    torch.testing.assert_close(terms["distance"].detach(), torch.stack(per_modality).mean())

    module.train()  # training: 3 Adam steps of the estimator before the estimate
    module(xs)
    assert all(not torch.equal(a, b) for a, b in zip(before, module.auxiliary_parameters()))
    assert module.club.optimizer.state_dict()["state"][0]["step"] == 3
    assert {id(p) for p in module.auxiliary_parameters()} == {
        id(p) for p in module.club.parameters()}


def test_gradients_reach_the_right_halves_and_modules():
    module = _module()
    xs = [x.requires_grad_() for x in _inputs()]
    terms = module(xs)
    heads = list(module.align_heads.parameters())
    maps = list(module.generic_maps.parameters()) + list(module.unique_maps.parameters())
    # alignment: generic halves only, through the projection heads, not the CLUB maps
    grads = torch.autograd.grad(terms["align"], [*xs, *heads, *maps], retain_graph=True,
                                allow_unused=True)
    for x_grad, w in zip(grads, WIDTHS):
        assert x_grad[:, : w // 2].abs().sum() > 0
        assert torch.count_nonzero(x_grad[:, w // 2 :]) == 0
    assert all(g is not None and g.abs().sum() > 0 for g in grads[len(xs) : len(xs) + 2])
    assert all(g is None for g in grads[len(xs) + len(heads) :])
    # distancing: both halves of every modality, through the maps, not the heads nor q(u|g)
    grads = torch.autograd.grad(terms["distance"], [*xs, *heads, *maps], allow_unused=True)
    for x_grad, w in zip(grads, WIDTHS):
        assert x_grad[:, : w // 2].abs().sum() > 0 and x_grad[:, w // 2 :].abs().sum() > 0
    assert all(g is None for g in grads[len(xs) : len(xs) + len(heads)])
    assert all(g is not None for g in grads[len(xs) + len(heads) :])


@pytest.mark.parametrize("align, distance", list(itertools.product(
    ["solosim", "infonce", "none"], ["club", "l2", "none"])))
def test_choices_and_weighted_sum(align, distance):
    module = _module(align=align, distance=distance, alpha=0.3, beta=0.7)
    terms = module(_inputs())
    expected = {k for k, v in (("align", align), ("distance", distance)) if v != "none"}
    assert set(terms) == expected
    assert (module.align_heads is None) == (align == "none")
    assert (module.generic_maps is None) == (distance == "none")
    assert (module.club is None) == (distance != "club")
    total = 0.3 * terms.get("align", 0.0) + 0.7 * terms.get("distance", 0.0)  # eq. 19
    torch.testing.assert_close(module.weighted_sum(terms), torch.as_tensor(total))


def test_reset_parameters_restarts_the_estimator():
    module = _module()
    module(_inputs())
    assert module.club.optimizer.state
    module.reset_parameters()
    assert not module.club.optimizer.state


def test_bad_arguments():
    with pytest.raises(ValueError, match="align must be one of"):
        SeparateLearning([4, 4], align="cosine")
    with pytest.raises(ValueError, match="distance must be one of"):
        SeparateLearning([4, 4], distance="orthogonal")
    with pytest.raises(ValueError, match="at least 2 modalities"):
        SeparateLearning([4])
    with pytest.raises(TypeError, match="one width per modality"):
        SeparateLearning(8)
    with pytest.raises(ValueError, match=">= 2"):
        SeparateLearning([4, 1])
    with pytest.raises(ValueError, match="beta must be"):
        SeparateLearning([4, 4], beta=-1.0)
    module = SeparateLearning([4, 6], club_steps=1)
    with pytest.raises(ValueError, match="expected 2 modality tensors"):
        module([torch.randn(5, 4)])
    with pytest.raises(ValueError, match=r"xs\[1\] must have shape \[B, 6\]"):
        module([torch.randn(5, 4), torch.randn(5, 5)])
    with pytest.raises(ValueError, match="same items"):
        module([torch.randn(5, 4), torch.randn(6, 6)])


AFFINE_WIDTHS = [30, 7, 40]  # wide modalities take linear_chain's composed order
AFFINE_FEATURES = [30, 12, 40]
AFFINE_BATCH = 40


@pytest.mark.parametrize("align, distance", [("solosim", "club"), ("infonce", "l2"),
                                             ("none", "club"), ("solosim", "none")])
def test_forward_affine_matches_forward_on_the_mapped_features(align, distance):
    module = _module(widths=AFFINE_WIDTHS, align=align, distance=distance, proj_hidden=4,
                     proj_dim=3, club_dim=2).double()
    twin = copy.deepcopy(module)
    gen = torch.Generator().manual_seed(1)
    feats = [torch.randn(AFFINE_BATCH, f, generator=gen, dtype=torch.double)
             for f in AFFINE_FEATURES]
    maps = [torch.nn.Linear(f, w).double() for f, w in zip(AFFINE_FEATURES, AFFINE_WIDTHS)]
    torch.manual_seed(7)
    ref = module([m(f) for m, f in zip(maps, feats)])
    torch.manual_seed(7)
    out = twin.forward_affine(feats, [m.weight for m in maps], [m.bias for m in maps])
    assert set(out) == set(ref)
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], rtol=1e-9, atol=1e-10)
    params = [p for m in maps for p in m.parameters()]
    grads = torch.autograd.grad(sum(out.values()), params + list(twin.parameters()),
                                allow_unused=True)
    ref_grads = torch.autograd.grad(sum(ref.values()), params + list(module.parameters()),
                                    allow_unused=True)
    for g, r in zip(grads, ref_grads):
        assert (g is None) == (r is None)
        if g is not None:
            torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-10)
    if distance == "club":  # the estimator was fitted on the same samples
        for p, q in zip(twin.auxiliary_parameters(), module.auxiliary_parameters()):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-10)


def test_forward_affine_bad_arguments():
    module = SeparateLearning([4, 6], club_steps=1)
    feats, weights, biases = [torch.randn(5, 3), torch.randn(5, 2)], [
        torch.randn(4, 3), torch.randn(6, 2)], [None, torch.zeros(6)]
    with pytest.raises(ValueError, match="expected 2 features, weights and biases"):
        module.forward_affine(feats[:1], weights, biases)
    with pytest.raises(ValueError, match=r"modality 1: features must be \[B, F_in\] and "
                                         r"weights \[6, F_in\]"):
        module.forward_affine(feats, [weights[0], weights[1].t()], biases)
    with pytest.raises(ValueError, match=r"modality 1: bias must have shape \[6\]"):
        module.forward_affine(feats, weights, [None, torch.zeros(4)])
    with pytest.raises(ValueError, match="same items"):
        module.forward_affine([feats[0], feats[1][:3]], weights, biases)
    assert set(module.forward_affine(feats, weights, biases)) == {"align", "distance"}
