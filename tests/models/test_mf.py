import math

import pytest
import torch

from pyg_multirec.models import MF
from pyg_multirec.train import train
from tests.helpers import assert_learns, bpr_batch

NUM_USERS, NUM_ITEMS, DIM = 6, 9, 4


def bpr_by_hand(u, p, n, reg_weight, reg_form):
    """The BPR loss of a batch written out: ranking term and embedding regulariser."""
    batch = u.size(0)
    diff = (u * p).sum(-1) - (u * n).sum(-1)
    ranking = -torch.log(torch.sigmoid(diff)).mean()
    if reg_form == "squared":  # sum_b ||e_b||^2 / 2 / B
        reg = sum((e**2).sum() for e in (u, p, n)) / 2 / batch
    else:  # MMRec's EmbLoss: sum of the Frobenius norms / B
        reg = sum(e.pow(2).sum().sqrt() for e in (u, p, n)) / batch
    return ranking + reg_weight * reg


@pytest.mark.parametrize("reg_form", ["squared", "norm"])
@pytest.mark.parametrize("reg_weight", [0.0, 0.3])
def test_embed_and_loss_match_hand_formulas(reg_form, reg_weight):
    torch.manual_seed(0)
    model = MF(NUM_USERS, NUM_ITEMS, dim=DIM, reg_weight=reg_weight, reg_form=reg_form).double()
    users = torch.tensor([0, 1, 1, 5, 3])
    pos, neg = torch.tensor([2, 8, 0, 4, 4]), torch.tensor([7, 7, 3, 1, 0])
    user_emb, item_emb = model.embed()
    assert user_emb.shape == (NUM_USERS, DIM) and item_emb.shape == (NUM_ITEMS, DIM)
    assert user_emb is model.user_emb.weight and item_emb is model.item_emb.weight

    loss = model.loss(users, pos, neg)["loss"]
    expected = bpr_by_hand(user_emb[users], item_emb[pos], item_emb[neg], reg_weight, reg_form)
    torch.testing.assert_close(loss, expected)
    params = [model.user_emb.weight, model.item_emb.weight]
    for grad, ref in zip(torch.autograd.grad(loss, params), torch.autograd.grad(expected, params)):
        torch.testing.assert_close(grad, ref)


def test_reset_parameters_is_xavier_uniform():
    torch.manual_seed(0)
    model = MF(200, 300, dim=16)
    before = model.item_emb.weight.detach().clone()
    model.reset_parameters()
    assert not torch.equal(model.item_emb.weight, before)
    for weight, rows in ((model.user_emb.weight, 200), (model.item_emb.weight, 300)):
        weight = weight.detach()
        bound = math.sqrt(6 / (rows + 16))
        assert weight.abs().max() <= bound
        assert weight.abs().max() > 0.9 * bound  # uniform over the whole range
        assert weight.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_users must be a positive int"):
        MF(0, 5)
    with pytest.raises(ValueError, match="num_items must be a positive int"):
        MF(5, -1)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        MF(5, 5, dim=0)
    with pytest.raises(ValueError, match="reg_form"):
        MF(5, 5, reg_form="l1")
    with pytest.raises(ValueError, match="reg_weight"):
        MF(5, 5, reg_weight=-1.0)


def test_repr():
    assert repr(MF(3, 4, dim=2, reg_form="norm")) == (
        "MF(3, 4, dim=2, reg_weight=0.0001, reg_form='norm')"
    )


@pytest.mark.parametrize("reg_form", ["squared", "norm"])
def test_mf_learns(tiny_data, reg_form):
    torch.manual_seed(0)
    model = MF(tiny_data["user"].num_nodes, tiny_data["item"].num_nodes, dim=16, reg_form=reg_form)
    result = train(model, tiny_data, epochs=20, batch_size=256, lr=0.01, patience=5,
                   progress=False)  # fmt: skip
    assert_learns(result, tiny_data, loss_key="train_loss")


def test_regulariser_shrinks_the_batch_embeddings(tiny_data):
    """A large weight makes the loss's gradient pull the batch's embeddings towards 0."""
    users, pos, neg = bpr_batch(tiny_data)
    for reg_form in ("squared", "norm"):
        torch.manual_seed(0)
        model = MF(tiny_data["user"].num_nodes, tiny_data["item"].num_nodes, dim=16,
                   reg_weight=1e3, reg_form=reg_form)  # fmt: skip
        model.loss(users, pos, neg)["loss"].backward()
        weight, grad = model.user_emb.weight, model.user_emb.weight.grad
        assert (weight[users] * grad[users]).sum() > 0  # a descent step shrinks them
