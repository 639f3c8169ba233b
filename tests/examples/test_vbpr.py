import argparse

import pytest
import torch
import torch.nn.functional as F

from pyg_multirec.experiment import build_parser, load_data, run_example
from pyg_multirec.nn import SeparateLearning
from pyg_multirec.train import seed_everything, train
from tests.helpers import (
    SMALL_SYNTHETIC_ARGS,
    assert_learns,
    bpr_batch,
    load_example,
    modal_features,
)

vbpr = load_example("vbpr")
VBPR = vbpr.VBPR


def features(data):
    return list(modal_features(data).values())


def make(data, dim=16, sea=False, feats=None, club_steps=5, club_lr=0.02, **kwargs):
    feats = features(data) if feats is None else feats
    modules = None
    if sea:  # the estimator learns at the model's rate (0.02 in these tests), as build() does
        modules = SeparateLearning([dim] * len(feats), club_steps=club_steps, club_lr=club_lr)
    return VBPR(data["user"].num_nodes, data["item"].num_nodes, feats, dim, sea=modules, **kwargs)


def test_matches_reference(tiny_data):
    model = make(tiny_data, reg_weight=1e-2).double()
    users, pos, neg = bpr_batch(tiny_data)
    x = torch.cat(features(tiny_data), 1).double()
    # VBPR: item = [gamma_i ; E f_i + c], user = [gamma_u ; theta_u], inner product
    items = torch.cat([model.item_emb.weight, x @ model.content.weight.t() + model.content.bias], 1)
    user_out, item_out = model.embed()
    torch.testing.assert_close(item_out, items)
    torch.testing.assert_close(user_out, model.user_emb.weight)
    u, p, n = model.user_emb.weight[users], items[pos], items[neg]
    reg = 1e-2 / 2 * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / len(users)
    ref = -F.logsigmoid((u * p).sum(-1) - (u * n).sum(-1)).mean() + reg
    terms = model.loss(users, pos, neg)
    torch.testing.assert_close(terms["loss"], ref)
    params = [model.user_emb.weight, model.item_emb.weight, model.content.weight]
    for grad, ref_grad in zip(torch.autograd.grad(terms["loss"], params),
                              torch.autograd.grad(ref, params)):
        torch.testing.assert_close(grad, ref_grad)


def test_sea_terms_and_alignment_reference(tiny_data):
    model = make(tiny_data, sea=True).double()
    model.eval()  # no CLUB fitting: only the terms are compared
    users, pos, neg = bpr_batch(tiny_data)
    terms = model.loss(users, pos, neg)
    assert set(terms) == {"loss", "bpr", "align", "distance"}
    items = torch.cat([pos, neg]).unique()
    generic = [lin(x.double()[items])[:, :8] for lin, x in
               zip(model.projections, features(tiny_data))]
    views = [head(g) for head, g in zip(model.sea.align_heads, generic)]  # official heads
    z1, z2 = F.normalize(views[0], dim=-1), F.normalize(views[1], dim=-1)
    logits = z1 @ z2.t() / 0.2  # SEA eq. 16, tau 0.2
    align = -torch.log_softmax(logits, dim=1).diag().mean()
    torch.testing.assert_close(terms["align"], align)
    total = terms["bpr"] + 0.012 * terms["align"] + 0.006 * terms["distance"]
    torch.testing.assert_close(terms["loss"], total)
    # the item content is the concatenation of the modality projections
    content = torch.cat([lin(x.double()) for lin, x in
                         zip(model.projections, features(tiny_data))], 1)
    torch.testing.assert_close(model.embed()[1][:, 16:], content)


def test_sea_club_fitted_by_its_own_optimizer(tiny_data):
    model = make(tiny_data, sea=True)
    aux = {id(p) for p in model.auxiliary_parameters()}
    assert aux == {id(p) for p in model.sea.club.parameters()}
    club_before = [p.detach().clone() for p in model.sea.club.parameters()]
    main_before = [p.detach().clone() for p in model.projections.parameters()]
    terms = model.loss(*bpr_batch(tiny_data))  # training mode: fits the estimator first
    assert any(not torch.equal(a, b) for a, b in zip(club_before, model.sea.club.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(main_before, model.projections.parameters()))
    terms["distance"].backward()  # the bound's gradient reaches the projections
    assert model.projections[0].weight.grad.abs().sum() > 0


def test_sea_optimizer_state_round_trip(tiny_data):
    model = make(tiny_data, sea=True)
    model.loss(*bpr_batch(tiny_data))
    state = model.state_dict()
    assert state["sea.club._extra_state"].dtype == torch.uint8
    fresh = make(tiny_data, sea=True)
    fresh.load_state_dict(state)
    saved, loaded = model.sea.club.optimizer.state_dict(), fresh.sea.club.optimizer.state_dict()
    assert saved["state"].keys() == loaded["state"].keys() and len(saved["state"]) > 0
    for key, value in saved["state"].items():
        for name, tensor in value.items():
            torch.testing.assert_close(loaded["state"][key][name], tensor)


@pytest.mark.parametrize("sea", [False, True])
def test_vbpr_learns(tiny_data, sea):
    seed_everything(0)
    model = make(tiny_data, sea=sea)
    result = train(model, tiny_data, epochs=10, batch_size=512, lr=0.02, patience=5,
                   progress=False)
    assert_learns(result, tiny_data)


def test_runs_a_few_steps(tiny_data):
    result = train(make(tiny_data, sea=True), tiny_data, epochs=1, batch_size=128,
                   max_train_batches=3, progress=False)
    assert {"train_loss", "train_bpr", "train_align", "train_distance"} <= set(result.history[0])


def test_bad_arguments(tiny_data):
    feats = features(tiny_data)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        make(tiny_data, sea=True, feats=feats[:1])
    with pytest.raises(ValueError, match="features\\[0\\]"):
        make(tiny_data, feats=[feats[0][:-1]])
    with pytest.raises(ValueError, match="non-empty"):
        make(tiny_data, feats=[])
    with pytest.raises(ValueError, match="sea expects 3 modalities"):
        VBPR(300, 150, feats, 16, sea=SeparateLearning([16, 16, 16]))
    with pytest.raises(ValueError, match="steps"):
        SeparateLearning([16, 16], club_steps=0)


def _reference_recall(checkpoint, k=20):
    """Test Recall@k of a checkpoint, ranked by hand: inner products, training items masked,
    averaged over the users with test items."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config = argparse.Namespace(**saved["config"])
    data = load_data(config)
    model = vbpr.build(data, config)
    model.load_state_dict(saved["state"])
    model.eval()
    with torch.no_grad():
        users, items = model.embed()
        scores = users @ items.t()
    train_edges = data["user", "train", "item"].edge_index
    scores[train_edges[0], train_edges[1]] = float("-inf")
    top = scores.topk(k, dim=1).indices
    test = data["user", "test", "item"].edge_index
    recalls = []
    for user in test[0].unique().tolist():
        targets = set(test[1, test[0] == user].tolist())
        recalls.append(len(targets & set(top[user].tolist())) / len(targets))
    return sum(recalls) / len(recalls)


@pytest.mark.parametrize("extra", [[], ["--sea", "--club-steps", "3"], ["--cold-start", "--sea"]])
def test_example_cli(tmp_path, extra):
    out = tmp_path / "run"
    args = ["--epochs", "1", "--max-batches", "3", "--out", str(out), *SMALL_SYNTHETIC_ARGS, *extra]
    result = run_example("vbpr", vbpr.build, vbpr.add_arguments, argv=args)
    assert result.test["recall@20"] == pytest.approx(_reference_recall(out / "best.pt"))
    assert ("train_align" in result.history[0]) == ("--sea" in extra)
    metrics = run_example("vbpr", vbpr.build, vbpr.add_arguments,
                          argv=["evaluate", "--checkpoint", str(out / "best.pt")])
    assert metrics["recall@20"] == pytest.approx(result.test["recall@20"])


@pytest.mark.parametrize("extra", [[], ["--sea"]])
def test_runs_on_real_data(ml100k_root, tmp_path, extra):
    result = run_example("vbpr", vbpr.build, vbpr.add_arguments, argv=[
        "--dataset", "ml100k", "--data-root", str(ml100k_root), "--epochs", "1",
        "--max-batches", "2", "--out", str(tmp_path), "--quiet", *extra])
    assert 0.0 < result.test["recall@20"] <= 1.0
    assert result.test["num_rows"] == 943


def test_sea_flags_share_names_with_sea_and_old_flags_still_work(tiny_data):
    parser = argparse.ArgumentParser()
    vbpr.add_arguments(parser)
    args = parser.parse_args(["--sea", "--alpha", "0.5", "--beta", "0.25", "--tau", "0.3",
                              "--align", "infonce", "--distance", "l2"])
    args.dim, args.lr = 16, 1e-3
    sea = vbpr.build(tiny_data, args).sea
    assert (sea.alpha, sea.beta, sea.align, sea.distance) == (0.5, 0.25, "infonce", "l2")
    assert sea.align_loss.temperature == 0.3
    old = parser.parse_args(["--sea", "--align-weight", "0.4", "--distance-weight", "0.2",
                             "--sea-temperature", "0.1"])
    assert (old.alpha, old.beta, old.tau) == (0.4, 0.2, 0.1)
    assert "--align-weight" not in parser.format_help()  # hidden aliases


def test_shipped_defaults_are_the_validated_point():
    args = build_parser("vbpr", vbpr.add_arguments, vbpr.DEFAULTS).parse_args(["train"])
    assert (args.reg_weight, args.reg_form, args.pair_sampling) == (1.0, "norm", "users")
