import argparse

import pytest
import torch
import torch.nn.functional as F

from pyg_multirec.experiment import load_data, run_example
from pyg_multirec.models import MF, LightGCN
from pyg_multirec.train import seed_everything, train
from tests.helpers import (
    SMALL_SYNTHETIC_ARGS,
    assert_learns,
    bpr_batch,
    dense_recall,
    load_example,
    modal_features,
)

micro = load_example("micro")
MICRO = micro.MICRO


def features(data):
    return list(modal_features(data).values())


def make(data, backbone="lightgcn", dim=16, feats=None, **kwargs):
    num_users, num_items = data["user"].num_nodes, data["item"].num_nodes
    if backbone == "lightgcn":
        net = LightGCN(num_users, num_items, data["user", "train", "item"].edge_index, dim=dim)
    else:
        net = MF(num_users, num_items, dim=dim)
    return MICRO(net, features(data) if feats is None else feats, **kwargs)


# ----------------------------------------------------------------- dense references
def dense_knn(x, k):
    """MICRO eq. 1-3 with a dense N x N matrix (fine for the tiny test catalogue)."""
    z = F.normalize(x, dim=-1)
    sim = z @ z.t()
    values, index = sim.topk(k, dim=-1)
    kept = torch.zeros_like(sim).scatter(1, index, values.clamp_min(0))
    degree = kept.sum(1)
    inv_sqrt = torch.where(degree > 0, degree.clamp_min(1e-30).rsqrt(), torch.zeros_like(degree))
    return inv_sqrt[:, None] * kept * inv_sqrt[None, :]


def neg_mutual_info(u, v, tau):
    """-I(u_i, v_i) of MICRO eq. 11 for every i."""
    u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
    between, refl = torch.exp(u @ v.t() / tau), torch.exp(u @ u.t() / tau)
    return -torch.log(between.diag() / (between.sum(1) + refl.sum(1) - refl.diag()))


def reference(model, data, users, pos, neg, lam, layers, tau=0.5, beta=0.03, reg=1e-4):
    item_emb = model.backbone.item_emb.weight
    modal = []
    for layer, x in zip(model.structure, features(data)):
        x = x.to(item_emb.dtype)
        adj = lam * dense_knn(x, 10) + (1 - lam) * dense_knn(layer.lin(x), 10)  # eq. 5
        h = item_emb
        for _ in range(layers):
            h = adj @ h  # eq. 6
        modal.append(h)
    fusion = model.fusion
    w = torch.stack([fusion.query(torch.tanh(fusion.lin(h))).squeeze(-1) for h in modal], 1)
    alpha = torch.softmax(w, dim=1)  # eq. 7-8
    fused = sum(alpha[:, m : m + 1] * h for m, h in enumerate(modal))  # eq. 9
    user_out, item_out = model.backbone.embed()
    item_out = item_out + fused / fused.norm(dim=-1, keepdim=True)  # eq. 13
    u = user_out[users]
    diff = (u * item_out[pos]).sum(-1) - (u * item_out[neg]).sum(-1)
    ego = [model.backbone.user_emb.weight[users], item_emb[pos], item_emb[neg]]
    bpr = -F.logsigmoid(diff).mean() + reg / 2 * sum(e.pow(2).sum() for e in ego) / len(users)
    contrastive = torch.stack(  # eq. 10
        [0.5 * (neg_mutual_info(h, fused, tau) + neg_mutual_info(fused, h, tau)) for h in modal]
    ).mean(0).mean()
    return user_out, item_out, bpr, contrastive, bpr + beta * contrastive


@pytest.mark.parametrize("backbone", ["lightgcn", "mf"])
@pytest.mark.parametrize("layers", [1, 2])
def test_matches_dense_reference(tiny_data, backbone, layers):
    seed_everything(0)
    model = make(tiny_data, backbone, item_layers=layers, skip_lambda=0.7).double()
    model.on_epoch_start(1)
    users, pos, neg = bpr_batch(tiny_data)
    user_out, item_out = model.embed()
    terms = model.loss(users, pos, neg)
    ref_user, ref_item, bpr, contrastive, total = reference(
        model, tiny_data, users, pos, neg, 0.7, layers
    )
    torch.testing.assert_close(user_out, ref_user)
    torch.testing.assert_close(item_out, ref_item)
    torch.testing.assert_close(terms["bpr"], bpr)
    torch.testing.assert_close(terms["contrastive"], contrastive)
    torch.testing.assert_close(terms["loss"], total)
    params = [model.backbone.item_emb.weight, model.structure[0].lin.weight,
              model.fusion.lin.weight]
    grads = torch.autograd.grad(terms["loss"], params)
    ref_grads = torch.autograd.grad(total, params)
    for grad, ref_grad in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref_grad)


@pytest.mark.parametrize("backbone", ["lightgcn", "mf"])
def test_micro_learns(tiny_data, backbone):
    model = make(tiny_data, backbone)
    result = train(model, tiny_data, epochs=10, batch_size=512, lr=0.02, patience=5,
                   progress=False)
    assert_learns(result, tiny_data)


def test_learned_graph_gets_gradients_frozen_has_no_parameters(tiny_data):
    model = make(tiny_data)
    model.loss(*bpr_batch(tiny_data))["loss"].backward()
    for layer in model.structure:
        assert layer.lin.weight.grad is not None and layer.lin.weight.grad.abs().sum() > 0
        assert layer.lin.bias.grad.abs().sum() > 0

    frozen = make(tiny_data, structure="frozen")
    assert sum(p.numel() for p in frozen.structure.parameters()) == 0
    frozen.loss(*bpr_batch(tiny_data))["loss"].backward()
    assert frozen.backbone.item_emb.weight.grad.abs().sum() > 0
    assert frozen.fusion.lin.weight.grad.abs().sum() > 0


def test_learned_graph_rebuilt_at_epoch_start_only(tiny_data):
    model = make(tiny_data)
    model.on_epoch_start(1)
    before = [layer.learned_neighbors.clone() for layer in model.structure]
    with torch.no_grad():
        for layer in model.structure:
            layer.lin.weight.copy_(torch.randn_like(layer.lin.weight))
    model.loss(*bpr_batch(tiny_data))  # within the epoch: the selection is cached
    for layer, old in zip(model.structure, before):
        assert torch.equal(layer.learned_neighbors, old)
    model.on_epoch_start(2)  # new epoch: reselected from the new parameters
    for layer, old in zip(model.structure, before):
        assert not torch.equal(layer.learned_neighbors, old)


def test_structure_grad_first_batch_learns_the_graph_from_the_epochs_first_batch(tiny_data):
    seed_everything(0)
    model = make(tiny_data, structure_grad="first-batch")
    seed_everything(0)
    every = make(tiny_data)
    batch = bpr_batch(tiny_data)
    for net in (model, every):
        net.on_epoch_start(1)
    first, reference = model.loss(*batch)["loss"], every.loss(*batch)["loss"]
    torch.testing.assert_close(first, reference)  # the first batch: the same model
    first.backward()
    assert all(layer.lin.weight.grad.abs().sum() > 0 for layer in model.structure)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():  # as an optimiser step would
        for layer in model.structure:
            layer.lin.weight.mul_(2.0)
    model.loss(*batch)["loss"].backward()  # later batches: the graph of the first, detached
    assert all(layer.lin.weight.grad is None for layer in model.structure)
    assert model.backbone.item_emb.weight.grad.abs().sum() > 0
    model.on_epoch_start(2)  # a new epoch: gradient again, from the changed transform
    model.loss(*batch)["loss"].backward()
    assert all(layer.lin.weight.grad.abs().sum() > 0 for layer in model.structure)
    with pytest.raises(ValueError, match="structure_grad must be one of"):
        make(tiny_data, structure_grad="never")
    with pytest.raises(ValueError, match="structure_grad='first-batch' needs structure='learned'"):
        make(tiny_data, structure="frozen", structure_grad="first-batch")


def test_backbones_differ(tiny_data):
    seed_everything(0)
    with_mf = make(tiny_data, "mf")
    seed_everything(0)
    with_lightgcn = make(tiny_data, "lightgcn")
    mf_user, mf_item = with_mf.embed()
    lg_user, lg_item = with_lightgcn.embed()
    torch.testing.assert_close(mf_user, with_mf.backbone.user_emb.weight)  # MF: no propagation
    assert not torch.allclose(lg_user, with_lightgcn.backbone.user_emb.weight)
    assert not torch.allclose(mf_item, lg_item)


def test_one_modality_and_batch_contrastive(tiny_data):
    model = make(tiny_data, feats=features(tiny_data)[:1], contrastive_items="batch")
    terms = model.loss(*bpr_batch(tiny_data))
    assert set(terms) == {"loss", "bpr", "contrastive"}
    assert all(torch.isfinite(v) for v in terms.values())
    _, weights = model.fusion(model.item_representations()[0])
    torch.testing.assert_close(weights, torch.ones_like(weights))


def test_runs_a_few_steps(tiny_data):
    model = make(tiny_data)
    result = train(model, tiny_data, epochs=1, batch_size=128, max_train_batches=3,
                   progress=False)
    assert {"train_loss", "train_bpr", "train_contrastive"} <= set(result.history[0])


def test_bad_arguments(tiny_data):
    feats = features(tiny_data)
    with pytest.raises(ValueError, match="rows"):
        make(tiny_data, feats=[feats[0][:-1]])
    with pytest.raises(ValueError, match="non-empty"):
        make(tiny_data, feats=[])
    with pytest.raises(ValueError, match="structure"):
        make(tiny_data, structure="dense")
    with pytest.raises(ValueError, match="item_layers"):
        make(tiny_data, item_layers=0)
    with pytest.raises(ValueError, match="contrastive_items"):
        make(tiny_data, contrastive_items="some")
    with pytest.raises(TypeError, match="backbone"):
        MICRO(torch.nn.Linear(2, 2), feats)


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--backbone", "mf", "--structure", "frozen"],
        ["--cold-start", "--item-layers", "2", "--backbone-norm", "sym"],
        ["--structure-grad", "first-batch", "--contrastive-items", "batch"],
    ],
)
def test_example_cli(tmp_path, extra):
    out = tmp_path / "run"
    args = ["--epochs", "1", "--max-batches", "3", "--out", str(out), *SMALL_SYNTHETIC_ARGS, *extra]
    result = run_example("micro", micro.build, micro.add_arguments, argv=args)
    # the reported test Recall@20 is the saved model's, recomputed from one dense score matrix
    saved = torch.load(out / "best.pt", weights_only=False)
    config = argparse.Namespace(**saved["config"])
    data = load_data(config)
    model = micro.build(data, config)
    model.load_state_dict(saved["state"])
    model.on_epoch_start(0)
    assert result.test["recall@20"] == pytest.approx(dense_recall(model, data))
    assert {"train_bpr", "train_contrastive"} <= set(result.history[0])
    metrics = run_example("micro", micro.build, micro.add_arguments,
                          argv=["evaluate", "--checkpoint", str(out / "best.pt")])
    assert metrics["recall@20"] == pytest.approx(result.test["recall@20"])


@pytest.mark.parametrize("negatives", ["all", "warm"])
def test_cold_start_negatives_warm_never_draws_a_cold_item(tmp_path, negatives):
    drawn = []

    def recording_build(data, args):
        model = micro.build(data, args)
        loss = model.loss

        def recorded(users, pos_items, neg_items):
            drawn.append(neg_items.clone())
            return loss(users, pos_items, neg_items)

        model.loss = recorded
        return model

    args = ["--epochs", "1", "--max-batches", "4", "--batch-size", "256", "--cold-start",
            "--contrastive-items", "batch", "--negatives", negatives, "--out", str(tmp_path),
            *SMALL_SYNTHETIC_ARGS, "--synthetic-items", "150"]  # fmt: skip
    # (150 items: with 80, a user trains on all 64 warm ones and has no warm negative left)
    run_example("micro", recording_build, micro.add_arguments, argv=args)
    config = argparse.Namespace(**torch.load(tmp_path / "best.pt", weights_only=False)["config"])
    cold = load_data(config)["item"].cold_mask
    drawn = torch.cat(drawn)
    assert drawn.numel() == 4 * 256
    if negatives == "warm":
        assert not cold[drawn].any()
    else:  # 30 of the 150 items are cold: about 200 of the 1024 negatives
        assert cold[drawn].sum() > 100


def test_backbone_norm_and_negatives_flags(tmp_path, capsys):
    args = ["--epochs", "1", "--max-batches", "1", "--out", str(tmp_path), *SMALL_SYNTHETIC_ARGS,
            "--backbone", "lightgcn"]  # fmt: skip
    run_example("micro", micro.build, micro.add_arguments, micro.DEFAULTS, argv=args)
    saved = torch.load(tmp_path / "best.pt", weights_only=False)
    # defaults picked on cold-start validation: D^-1 (A + I) backbone, warm negatives
    assert saved["config"]["backbone_norm"] == "rw-self-loop"
    assert saved["config"]["negatives"] == "warm"
    assert saved["config"]["pair_sampling"] == "users"  # the code's sampler, validated on ml100k
    assert "backbone.graph" not in saved["state"]  # rebuilt from the pairs, not saved
    model = micro.build(load_data(argparse.Namespace(**saved["config"])),
                        argparse.Namespace(**saved["config"]))  # fmt: skip
    assert model.backbone.graph_weight is not None  # the D^-1 (A + I) weights
    for flag, value in (("--backbone-norm", "rw"), ("--negatives", "cold")):
        with pytest.raises(SystemExit):
            run_example("micro", micro.build, micro.add_arguments, argv=[*args, flag, value])
        assert f"argument {flag}: invalid choice: '{value}'" in capsys.readouterr().err


def test_runs_on_real_data(ml100k_root, tmp_path):
    result = run_example("micro", micro.build, micro.add_arguments, argv=[
        "--dataset", "ml100k", "--data-root", str(ml100k_root), "--epochs", "1",
        "--max-batches", "2", "--out", str(tmp_path), "--quiet"])
    assert 0.0 < result.test["recall@20"] <= 1.0
    assert result.test["num_rows"] == 943
