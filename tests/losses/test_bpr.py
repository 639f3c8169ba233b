import math

import pytest
import torch

from pyg_multirec.losses import BPRLoss


def reference_bpr(pos, neg, embeddings=(), reg_weight=0.0, reduction="mean", base=math.e):
    """Straight from SEA eq. 18 / MICRO eq. 15 plus the documented L2 convention."""
    batch = pos.size(0)
    if neg.dim() == 2:
        rank = torch.stack(
            [-torch.log(torch.sigmoid(pos[b] - neg[b])).mean() for b in range(batch)]
        )
    else:
        rank = -torch.log(torch.sigmoid(pos - neg))
    rank = rank / math.log(base)
    reg = torch.zeros(batch, dtype=pos.dtype)
    for e in embeddings:
        reg = reg + torch.stack([(e[b] ** 2).sum() for b in range(batch)]) / 2
    per_sample = rank + reg_weight * reg
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _inputs(batch=6, dim=4, num_neg=None, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, dim, generator=gen, dtype=dtype, requires_grad=True)
    i = torch.randn(batch, dim, generator=gen, dtype=dtype, requires_grad=True)
    shape = (batch, dim) if num_neg is None else (batch, num_neg, dim)
    j = torch.randn(*shape, generator=gen, dtype=dtype, requires_grad=True)
    return u, i, j


def _scores(u, i, j):
    pos = (u * i).sum(-1)
    neg = (u.unsqueeze(1) * j).sum(-1) if j.dim() == 3 else (u * j).sum(-1)
    return pos, neg


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("reg_weight", [0.0, 0.1])
@pytest.mark.parametrize("num_neg", [None, 3])
def test_matches_reference_values_and_gradients(reduction, reg_weight, num_neg):
    u, i, j = _inputs(num_neg=num_neg)
    loss_fn = BPRLoss(reg_weight=reg_weight, reduction=reduction)
    out = loss_fn(*_scores(u, i, j), u, i, j)
    grads = torch.autograd.grad(out.sum(), (u, i, j))

    u2, i2, j2 = (t.detach().clone().requires_grad_() for t in (u, i, j))
    ref = reference_bpr(*_scores(u2, i2, j2), (u2, i2, j2), reg_weight, reduction)
    ref_grads = torch.autograd.grad(ref.sum(), (u2, i2, j2))

    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg)


def test_regularisation_convention_sum_of_squares_over_two_batch():
    u, i, j = _inputs(batch=5)
    pos, neg = _scores(u, i, j)
    plain = BPRLoss()(pos, neg)
    reg = BPRLoss(reg_weight=0.3)(pos, neg, u, i, j)
    expected = 0.3 * (u.pow(2).sum() + i.pow(2).sum() + j.pow(2).sum()) / (2 * 5)
    torch.testing.assert_close(reg - plain, expected)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_norm_form_matches_mmrec_emb_loss(reduction):
    # MMRec: loss = mean BPR + reg_weight * (sum of ||E||_F over the batch matrices) / B
    u, i, j = _inputs(batch=5)
    pos, neg = _scores(u, i, j)
    out = BPRLoss(reg_weight=0.7, reg_form="norm", reduction=reduction)(pos, neg, u, i, j)
    rank = -torch.log(torch.sigmoid(pos - neg))
    frobenius = sum(torch.sqrt((e * e).sum()) for e in (u, i, j))
    per_sample = rank + 0.7 * frobenius / 5
    expected = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}
    torch.testing.assert_close(out, expected[reduction])
    if reduction == "mean":  # MMRec's total: mean ranking term + weight * EmbLoss
        torch.testing.assert_close(out, rank.mean() + 0.7 * frobenius / 5)


def test_norm_form_gradcheck_float64():
    u, i, j = _inputs(batch=4, dim=3, dtype=torch.float64)
    loss_fn = BPRLoss(reg_weight=0.5, reg_form="norm")

    def fn(u, i, j):
        return loss_fn(*_scores(u, i, j), u, i, j)

    assert torch.autograd.gradcheck(fn, (u, i, j))


def test_log_base_two_matches_official_sea_code():
    u, i, j = _inputs()
    pos, neg = _scores(u, i, j)
    out = BPRLoss(log_base=2.0)(pos, neg)
    torch.testing.assert_close(out, -torch.log2(torch.sigmoid(pos - neg)).mean())


def test_stable_for_large_score_gaps():
    pos = torch.tensor([-500.0, 500.0], requires_grad=True)
    neg = torch.tensor([500.0, -500.0])
    out = BPRLoss(reduction="none")(pos, neg)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.tensor([1000.0, 0.0]))
    out.sum().backward()
    torch.testing.assert_close(pos.grad, torch.tensor([-1.0, 0.0]))


def test_gradcheck_float64():
    u, i, j = _inputs(batch=4, dim=3, num_neg=2, dtype=torch.float64)
    loss_fn = BPRLoss(reg_weight=0.2)

    def fn(u, i, j):
        return loss_fn(*_scores(u, i, j), u, i, j)

    assert torch.autograd.gradcheck(fn, (u, i, j))


def test_errors():
    pos, neg = torch.randn(4), torch.randn(4)
    with pytest.raises(ValueError, match="reduction"):
        BPRLoss(reduction="avg")
    with pytest.raises(ValueError, match="reg_weight"):
        BPRLoss(reg_weight=-1.0)
    with pytest.raises(ValueError, match="log_base"):
        BPRLoss(log_base=1.0)
    with pytest.raises(ValueError, match="reg_form.*'l1'"):
        BPRLoss(reg_form="l1")
    with pytest.raises(ValueError, match="neg_scores"):
        BPRLoss()(pos, torch.randn(5))
    with pytest.raises(ValueError, match="neg_scores"):
        BPRLoss()(pos, torch.randn(4, 2, 2))
    with pytest.raises(ValueError, match="pos_scores"):
        BPRLoss()(torch.randn(4, 1), neg)
    with pytest.raises(TypeError, match="pos_scores.*floating"):
        BPRLoss()(torch.ones(4, dtype=torch.long), neg)
    with pytest.raises(ValueError, match="neg_scores.*NaN"):
        BPRLoss()(pos, torch.tensor([0.0, float("nan"), 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"embeddings\[1\].*4 rows"):
        BPRLoss(reg_weight=0.1)(pos, neg, torch.randn(4, 2), torch.randn(3, 2))


def test_it_trains_matrix_factorisation():
    torch.manual_seed(0)
    num_users, num_items, dim = 8, 12, 4
    users = torch.arange(num_users).repeat_interleave(2)
    pos_items = torch.randint(0, num_items // 2, (users.numel(),))
    neg_items = torch.randint(num_items // 2, num_items, (users.numel(),))
    user_emb = torch.nn.Embedding(num_users, dim)
    item_emb = torch.nn.Embedding(num_items, dim)
    params = list(user_emb.parameters()) + list(item_emb.parameters())
    opt = torch.optim.Adam(params, lr=0.05)
    loss_fn = BPRLoss(reg_weight=1e-4)
    losses = []
    for _ in range(50):
        u, i, j = user_emb(users), item_emb(pos_items), item_emb(neg_items)
        loss = loss_fn((u * i).sum(-1), (u * j).sum(-1), u, i, j)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
