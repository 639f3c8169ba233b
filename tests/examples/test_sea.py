"""Tests of examples/sea.py: SEA assembled from the library's layers and losses."""

import argparse
import copy
import itertools

import pytest
import torch
import torch.nn.functional as F

import pyg_multirec.train as train_module
from pyg_multirec.datasets import cold_start_split
from pyg_multirec.experiment import run_example
from pyg_multirec.losses import InfoNCELoss, NegativeL2Distance, SoloSimLoss
from pyg_multirec.train import train
from tests.helpers import assert_learns, bpr_batch, load_example, modal_features

sea = load_example("sea")
SEA, VARIANTS, add_arguments, build = sea.SEA, sea.VARIANTS, sea.add_arguments, sea.build
resolve_components = sea.resolve_components

DIM = 16
FAST_CLUB_STEPS = 3


def _model(data, seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs.setdefault("dim", DIM)
    kwargs.setdefault("club_steps", FAST_CLUB_STEPS)
    kwargs.setdefault("club_lr", 1e-2)
    return SEA(
        data["user"].num_nodes,
        data["item"].num_nodes,
        data["user", "train", "item"].edge_index,
        modal_features(data),
        **kwargs,
    )


def _views(model, batch):
    """Generic / unique halves of the batch's distinct items, recomputed from the model."""
    items = torch.unique(torch.cat([batch[1], batch[2]]))
    rows = [s[items] for s in model.separated()]
    halves = model.separate.generic_channels
    return [x[:, :g] for x, g in zip(rows, halves)], [x[:, g:] for x, g in zip(rows, halves)]


def _solosim(z1, z2, tau):
    z1, z2 = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    logits = z1 @ z2.t() / tau
    rows = [torch.logsumexp(logits[i], 0) - logits[i, i] for i in range(z1.size(0))]
    return torch.stack(rows).mean()


def _infonce(z1, z2, tau):
    return 0.5 * (_solosim(z1, z2, tau) + _solosim(z2, z1, tau))


def test_runs_a_few_steps(tiny_data):
    model = _model(tiny_data)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(3):
        terms = model.loss(*bpr_batch(tiny_data, seed=step))
        assert set(terms) == {"loss", "bpr", "align", "distance"}
        assert all(torch.isfinite(v) for v in terms.values())
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    users, items = model.embed()
    num_modalities = len(tiny_data.modalities)
    assert users.shape == (tiny_data["user"].num_nodes, num_modalities * DIM)
    assert items.shape == (tiny_data["item"].num_nodes, num_modalities * DIM)


def test_learns_planted_structure(tiny_data):
    model = _model(tiny_data, dim=32)
    result = train(model, tiny_data, epochs=8, batch_size=1024, lr=0.02, patience=0,
                   progress=False)
    assert_learns(result, tiny_data)


@pytest.mark.parametrize(
    "flags, keys, align_cls, distance",
    [
        ({}, {"align", "distance"}, SoloSimLoss, "club"),
        ({"align": "none"}, {"distance"}, None, "club"),
        ({"distance": "none"}, {"align"}, SoloSimLoss, None),
        ({"align": "none", "distance": "none"}, set(), None, None),
        ({"align": "infonce", "distance": "l2"}, {"align", "distance"}, InfoNCELoss, "l2"),
    ],
)
def test_flags_select_the_loss_terms(tiny_data, flags, keys, align_cls, distance):
    model = _model(tiny_data, alpha=0.3, beta=0.7, **flags)
    terms = model.loss(*bpr_batch(tiny_data))
    assert set(terms) == {"loss", "bpr"} | keys
    expected = terms["bpr"] + 0.3 * terms.get("align", 0.0) + 0.7 * terms.get("distance", 0.0)
    torch.testing.assert_close(terms["loss"], expected)  # eq. 19
    sep = model.separate
    assert (sep.align_heads is None) == (align_cls is None)
    assert align_cls is None or type(sep.align_loss) is align_cls
    assert (sep.generic_maps is None) == (distance is None)
    assert (sep.club is not None) == (distance == "club")
    assert (sep.l2_distance is not None) == (distance == "l2")
    assert (len(model.auxiliary_parameters()) > 0) == (distance == "club")


def test_each_term_reaches_only_its_modules(tiny_data):
    model = _model(tiny_data)
    terms = model.loss(*bpr_batch(tiny_data))
    sep = model.separate
    groups = {
        "user_emb": list(model.user_emb.parameters()),
        "item_proj": list(model.item_proj.parameters()),
        "item_mlp": list(model.item_mlp.parameters()),
        "align_heads": list(sep.align_heads.parameters()),
        "maps": list(sep.generic_maps.parameters()) + list(sep.unique_maps.parameters()),
    }
    reached = {  # the halves are split off the wide map, before the MLP (official code)
        "bpr": {"user_emb", "item_proj", "item_mlp"},
        "align": {"align_heads", "item_proj"},
        "distance": {"maps", "item_proj"},
    }
    params = [p for group in groups.values() for p in group]
    for key, expected in reached.items():
        grads = torch.autograd.grad(terms[key], params, retain_graph=True, allow_unused=True)
        grads = iter(grads)
        for name, group in groups.items():
            got = [next(grads) for _ in group]
            has_grad = any(g is not None and bool(g.abs().sum() > 0) for g in got)
            assert has_grad == (name in expected), (key, name)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_compute_their_losses(tiny_data, variant):
    align, distance = VARIANTS[variant]
    model = _model(tiny_data, align=align, distance=distance, tau=0.3)
    batch = bpr_batch(tiny_data)
    torch.manual_seed(7)
    terms = model.loss(*batch)  # training mode: fits CLUB first, then estimates

    # independent references from the paper's formulas on the model's own sub-modules
    with torch.no_grad():
        generic, unique = _views(model, batch)
        views = [head(g) for head, g in zip(model.separate.align_heads, generic)]
        ref_align = {"solosim": _solosim, "infonce": _infonce}[align]
        expected_align = torch.stack(
            [ref_align(views[a], views[b], 0.3)
             for a, b in itertools.combinations(range(len(views)), 2)]).mean()
        other = {"solosim": _infonce, "infonce": _solosim}[align]
        assert not torch.allclose(
            terms["align"], other(views[0], views[1], 0.3), atol=1e-6, rtol=0)
        g = [f(x) for f, x in zip(model.separate.generic_maps, generic)]
        u = [f(x) for f, x in zip(model.separate.unique_maps, unique)]
        if distance == "l2":  # SEA eq. 30 on unit vectors
            per_modality = [
                -(F.normalize(um, dim=-1) - F.normalize(gm, dim=-1)).pow(2).sum(-1).mean()
                for gm, um in zip(g, u)
            ]
        else:  # SEA eq. 15 with the fitted estimator, same random permutations
            torch.manual_seed(7)
            est = model.separate.club.estimator
            per_modality = []
            for gm, um in zip(g, u):
                perm = torch.randperm(gm.size(0))
                mu, inv_var = est.mu(gm), (-est.logvar(gm)).exp()
                diff = ((um[perm] - mu).pow(2) - (um - mu).pow(2)) * inv_var / 2
                per_modality.append(diff.sum(-1).mean())
        expected_distance = torch.stack(per_modality).mean()
    torch.testing.assert_close(terms["align"].detach(), expected_align)
    torch.testing.assert_close(terms["distance"].detach(), expected_distance)


def test_learnable_item_graph_matches_dense_reference(tiny_data):
    model = _model(tiny_data, item_layers=2)
    num_items = tiny_data["item"].num_nodes
    with torch.no_grad():
        model.item_graph.logits.copy_(torch.tensor([0.3, -0.2]))
    h = torch.randn(num_items, 5, requires_grad=True)
    out = model.propagate_items(h)
    alpha = torch.softmax(model.item_graph.logits, 0)
    dense = torch.zeros(num_items, num_items)
    for a, (edge_index, edge_weight) in zip(alpha, model._knn_graphs()):
        dense = dense.index_put((edge_index[1], edge_index[0]), a * edge_weight, accumulate=True)
    expected = dense @ (dense @ h)  # eq. 11-12, two layers
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.square().sum(), [h, model.item_graph.logits])
    ref_grads = torch.autograd.grad(expected.square().sum(), [h, model.item_graph.logits])
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg)
    fixed = _model(tiny_data, item_layers=2, item_graph_weights="fixed",
                   graph_init_weights=alpha.tolist())
    torch.testing.assert_close(fixed.propagate_items(h), expected, rtol=1e-5, atol=1e-6)


def test_club_is_fitted_by_its_own_optimizer(tiny_data, monkeypatch):
    model = _model(tiny_data)
    club = set(map(id, model.auxiliary_parameters()))
    assert club == set(map(id, model.separate.club.estimator.parameters()))
    before = [p.detach().clone() for p in model.separate.club.parameters()]
    seen = []

    class RecordingAdam(torch.optim.Adam):
        def __init__(self, params, **kwargs):
            params = list(params)
            seen.extend(map(id, params))
            super().__init__(params, **kwargs)

    monkeypatch.setattr(train_module.torch.optim, "Adam", RecordingAdam)
    train(model, tiny_data, epochs=1, batch_size=256, lr=1e-2, max_train_batches=2,
          progress=False)
    others = {id(p) for p in model.parameters()} - club
    assert set(seen) == others  # the trainer's Adam holds everything but the estimator
    after = list(model.separate.club.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # the inner fit ran
    assert model.separate.club.optimizer.state_dict()["state"][0]["step"] == 2 * FAST_CLUB_STEPS


def test_checkpoint_resumes_the_estimator_exactly(tiny_data):
    first = _model(tiny_data, seed=0)
    for step in range(2):
        first.loss(*bpr_batch(tiny_data, seed=step))["loss"].backward()
    # as the trainer stores it: every entry detached and copied to the CPU
    state = {k: v.detach().to("cpu", copy=True) for k, v in first.state_dict().items()}
    second = _model(tiny_data, seed=1)
    second.load_state_dict(state)
    a = first.separate.club.optimizer.state_dict()
    b = second.separate.club.optimizer.state_dict()
    for key in a["state"][0]:
        torch.testing.assert_close(a["state"][0][key], b["state"][0][key])
    batch = bpr_batch(tiny_data, seed=5)
    outs = []
    for model in (first, second):
        torch.manual_seed(3)
        outs.append(model.loss(*batch)["loss"])
    torch.testing.assert_close(outs[0], outs[1])
    for p, q in zip(first.separate.club.parameters(), second.separate.club.parameters()):
        torch.testing.assert_close(p, q)


def test_cold_items_are_ranked_from_theirmodal_features(tiny_data):
    data = cold_start_split(tiny_data, seed=0)
    model = _model(data)
    train(model, data, epochs=1, batch_size=256, lr=1e-2, max_train_batches=3, progress=False)
    cold = data["item"].cold_mask
    _, items = model.embed()
    assert torch.isfinite(items).all()
    cold_items = items[cold]
    assert cold_items.norm(dim=-1).min() > 0
    assert torch.unique(cold_items, dim=0).size(0) == cold_items.size(0)


def test_bad_input_raises(tiny_data):
    feats = modal_features(tiny_data)
    num_users, num_items = tiny_data["user"].num_nodes, tiny_data["item"].num_nodes
    edges = tiny_data["user", "train", "item"].edge_index
    one = {"text": feats["text"]}
    with pytest.raises(ValueError, match="at least 2 modalities"):
        SEA(num_users, num_items, edges, one)
    with pytest.raises(ValueError, match="dim must be an even int"):
        SEA(num_users, num_items, edges, feats, dim=15, item_encoder="linear")
    SEA(num_users, num_items, edges, feats, dim=15, club_steps=1)  # the MLP's dim may be odd
    for name in ("layer_combine", "item_encoder", "item_graph_weights"):
        with pytest.raises(ValueError, match=f"{name} must be one of"):
            SEA(num_users, num_items, edges, feats, **{name: "bogus"})
    for weights, message in (([0.5], "one value per modality"), ([0.5, -0.1], ">= 0"),
                             ([0.5, float("nan")], "finite"), ([0.0, 0.0], "all be zero")):
        with pytest.raises(ValueError, match=message):
            SEA(num_users, num_items, edges, feats, item_graph_weights="fixed",
                graph_init_weights=weights)
    zero = SEA(num_users, num_items, edges, feats, item_graph_weights="fixed",
               graph_init_weights=[0.0, 2.0], club_steps=1)  # a fixed zero drops that graph
    torch.testing.assert_close(zero.item_graph.weights, torch.tensor([2.0]))
    with pytest.raises(ValueError, match="> 0 when learnable"):
        SEA(num_users, num_items, edges, feats, graph_init_weights=[0.0, 1.0])
    with pytest.raises(ValueError, match=r"features\['text'\] must have shape"):
        SEA(num_users, num_items, edges, {**feats, "text": feats["text"][:-1]})
    with pytest.raises(ValueError, match="align must be one of"):
        SEA(num_users, num_items, edges, feats, align="cosine")
    with pytest.raises(ValueError, match="conflicts with"):
        resolve_components("a", "infonce", None)
    assert resolve_components("c", None, None) == ("infonce", "club")
    assert resolve_components(None, "none", None) == ("none", "club")


def test_build_reads_every_flag(tiny_data):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--variant", "d", "--item-graph-weights", "fixed"])
    args.dim, args.lr = DIM, 1e-3
    model = build(tiny_data, args)
    assert isinstance(model.separate.align_loss, InfoNCELoss)
    assert isinstance(model.separate.l2_distance, NegativeL2Distance)
    assert not model.item_graph.learnable
    torch.testing.assert_close(model.item_graph.weights, torch.tensor([0.1, 0.9]))
    assert model.layer_combine == "sum" and model.item_mlp is not None  # official defaults
    assert model.item_id is None and model.user_modality_logits is None
    args = parser.parse_args(["--layer-combine", "mean", "--item-encoder", "linear",
                              "--user-modality-weights", "--item-id-embedding",
                              "--graph-weights", "0.3", "0.7", "--alpha", "0.5"])
    args.dim, args.lr = DIM, 1e-3
    model = build(tiny_data, args)
    assert model.user_item.combine == "mean" and model.item_mlp is None
    assert model.item_id is not None and model.user_modality_logits is not None
    assert model.item_graph.learnable and model.separate.alpha == 0.5
    torch.testing.assert_close(model.item_graph.weights, torch.tensor([0.3, 0.7]))


@pytest.mark.parametrize("flags, message", [
    (["--variant", "a", "--distance", "l2"], "conflicts with"),
    (["--graph-weights", "0.5"], "one value per modality"),
    (["--item-graph-weights", "fixed", "--graph-weights", "0.5", "-1"], "finite and >= 0"),
])
def test_cli_rejects_bad_flags(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as err:
        run_example("sea", sea.build, sea.add_arguments, argv=[
            *flags, "--synthetic-users", "50", "--synthetic-items", "30",
            "--synthetic-interactions", "500", "--out", str(tmp_path), "--quiet"])
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_runs_on_real_data(ml100k_root, tmp_path):
    result = run_example("sea", sea.build, sea.add_arguments, defaults={"lr": 1e-4}, argv=[
        "--dataset", "ml100k", "--data-root", str(ml100k_root), "--epochs", "1",
        "--max-batches", "3", "--club-steps", "5", "--out", str(tmp_path), "--quiet"])
    assert 0.0 < result.test["recall@20"] <= 1.0
    assert result.test["num_rows"] == 943
    assert set(result.history[0]) >= {"train_loss", "train_bpr", "train_align",
                                       "train_distance"}


def _dense_user_item(data):
    """D^-1/2 A D^-1/2 of the user-item training graph, users first (a dense reference)."""
    num_users, num_items = data["user"].num_nodes, data["item"].num_nodes
    edges = data["user", "train", "item"].edge_index
    adj = torch.zeros(num_users + num_items, num_users + num_items)
    adj[edges[0], num_users + edges[1]] = 1.0
    adj = adj + adj.t()
    inv_sqrt = adj.sum(1).pow(-0.5).nan_to_num(posinf=0.0)
    return inv_sqrt[:, None] * adj * inv_sqrt[None, :]


@pytest.mark.parametrize("options", [
    {},  # official: sum of the layers, MLP encoder
    {"layer_combine": "mean", "item_encoder": "linear"},
    {"user_modality_weights": True, "item_id_embedding": True},
])
def test_embed_matches_dense_reference(tiny_data, options):
    model = _model(tiny_data, item_graph_weights="fixed", graph_init_weights=[0.4, 0.6],
                   **options).double()
    if model.user_modality_logits is not None:
        with torch.no_grad():  # visibly different weights per user
            model.user_modality_logits.normal_()
    num_users = tiny_data["user"].num_nodes
    feats = [f.double() for f in modal_features(tiny_data).values()]
    norm_adj = _dense_user_item(tiny_data).double()
    user_parts, item_parts = [], []
    for m, feat in enumerate(feats):
        s = feat @ model.item_proj[m].weight.t() + model.item_proj[m].bias
        if options.get("item_encoder", "mlp") == "mlp":
            first, _, second = model.item_mlp[m]
            s = second(F.leaky_relu(first(s), negative_slope=0.01))  # official MLP
        if options.get("item_id_embedding"):
            s = s + model.item_id.weight
        e = F.normalize(torch.cat([model.user_emb[m].weight, s]), dim=-1)  # layer 0
        layers = [e, norm_adj @ e, norm_adj @ (norm_adj @ e)]
        out = sum(layers) / (3 if options.get("layer_combine") == "mean" else 1)
        user_parts.append(out[:num_users])
        item_parts.append(out[num_users:])
    if options.get("user_modality_weights"):
        w = torch.softmax(model.user_modality_logits.squeeze(-1), dim=1)
        user_parts = [w[:, m : m + 1] * part for m, part in enumerate(user_parts)]
    items = torch.cat(item_parts, 1)
    num_items = items.size(0)
    dense = torch.zeros(num_items, num_items, dtype=torch.double)
    for a, (edge_index, edge_weight) in zip([0.4, 0.6], model._knn_graphs()):
        dense = dense.index_put((edge_index[1], edge_index[0]), a * edge_weight.double(),
                                accumulate=True)
    users_out, items_out = model.embed()
    torch.testing.assert_close(users_out, torch.cat(user_parts, 1))
    torch.testing.assert_close(items_out, items + dense @ items)  # eq. 12 and 17


@pytest.mark.parametrize("variant", ["a", "b"])
def test_mlp_encoder_loss_matches_the_formed_separated_representations(tiny_data, variant):
    """With the MLP encoder, SEA.loss never forms the wide s^m (linear_chain and
    SeparateLearning.forward_affine); loss and gradients equal the formed computation."""
    align, distance = VARIANTS[variant]
    model = _model(tiny_data, align=align, distance=distance, reg_weight=1e-3).double()
    twin = copy.deepcopy(model)
    users, pos, neg = bpr_batch(tiny_data, seed=2)
    torch.manual_seed(3)
    out = model.loss(users, pos, neg)
    torch.manual_seed(3)
    separated = twin.separated()  # formed: (I, d_m) per modality
    inputs = twin.item_inputs(separated)
    user_out, item_out = twin.propagate(inputs)
    scores = twin._pair_scores(user_out[users], item_out[pos], item_out[neg])
    ego = (torch.cat([emb(users) for emb in twin.user_emb], dim=1),
           torch.cat([x[pos] for x in inputs], dim=1), torch.cat([x[neg] for x in inputs], dim=1))
    items = torch.unique(torch.cat([pos, neg]))
    terms = twin.separate([s[items] for s in separated])
    ref = twin.bpr(*scores, *ego) + twin.separate.weighted_sum(terms)
    torch.testing.assert_close(out["loss"], ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out["distance"], terms["distance"], rtol=1e-9, atol=1e-12)
    params, twin_params = list(model.parameters()), list(twin.parameters())
    grads = torch.autograd.grad(out["loss"], params, allow_unused=True)
    ref_grads = torch.autograd.grad(ref, twin_params, allow_unused=True)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
        assert (g is None) == (r is None), name
        if g is not None:
            torch.testing.assert_close(g, r, rtol=1e-7, atol=1e-12, msg=name)
