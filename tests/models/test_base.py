import pytest
import torch

import pyg_multirec.models as models
from pyg_multirec.evaluation import evaluate
from pyg_multirec.models import Recommender
from pyg_multirec.models.base import check_positive_int
from pyg_multirec.train import train


class InnerProduct(Recommender):
    """The smallest recommender: free embeddings, a BPR loss written out."""

    def __init__(self, num_users: int, num_items: int, dim: int = 8):
        super().__init__()
        self.user = torch.nn.Embedding(num_users, dim)
        self.item = torch.nn.Embedding(num_items, dim)

    def embed(self):
        return self.user.weight, self.item.weight

    def loss(self, users, pos_items, neg_items):
        u, i = self.embed()
        diff = (u[users] * i[pos_items]).sum(-1) - (u[users] * i[neg_items]).sum(-1)
        return {"loss": -torch.nn.functional.logsigmoid(diff).mean()}


def test_package_layout_and_old_import_path():
    from pyg_multirec.models.base import Recommender as from_base

    assert Recommender is from_base  # `from pyg_multirec.models import Recommender` still works
    assert sorted(models.__all__) == ["LightGCN", "MF", "Recommender"]
    assert issubclass(models.MF, Recommender) and issubclass(models.LightGCN, Recommender)


def test_default_score_is_the_inner_product():
    gen = torch.Generator().manual_seed(0)
    users, items = torch.randn(3, 4, generator=gen), torch.randn(5, 4, generator=gen)
    expected = torch.tensor(
        [[sum(float(users[a, d] * items[b, d]) for d in range(4)) for b in range(5)]
         for a in range(3)]
    )  # fmt: skip
    torch.testing.assert_close(Recommender().score(users, items), expected)


def test_defaults_and_missing_methods_name_the_class():
    class Half(Recommender):
        pass

    with pytest.raises(NotImplementedError, match="Half must implement embed"):
        Half().embed()
    with pytest.raises(NotImplementedError, match="Half must implement loss"):
        Half().loss(torch.zeros(1), torch.zeros(1), torch.zeros(1))
    assert Half().on_epoch_start(1) is None
    assert Half().auxiliary_parameters() == []


def test_embed_and_loss_are_enough_for_the_trainer_and_evaluator(tiny_data):
    model = InnerProduct(tiny_data["user"].num_nodes, tiny_data["item"].num_nodes)
    before = model.item.weight.detach().clone()
    result = train(model, tiny_data, epochs=1, batch_size=256, max_train_batches=2,
                   progress=False)  # fmt: skip
    assert not torch.equal(model.item.weight, before)
    test = evaluate(model, tiny_data, "test")
    assert result.test["recall@20"] == pytest.approx(test["recall@20"])


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "4"])
def test_check_positive_int(bad):
    check_positive_int(1, "dim")
    with pytest.raises(ValueError, match=r"dim must be a positive int \(got"):
        check_positive_int(bad, "dim")


def test_main_parameters_leave_out_the_auxiliary_and_frozen_ones():
    import torch

    from pyg_multirec.models import Recommender

    class WithAux(Recommender):
        def __init__(self):
            super().__init__()
            self.main = torch.nn.Linear(2, 2)
            self.frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
            self.estimator = torch.nn.Linear(2, 1)

        def auxiliary_parameters(self):
            return list(self.estimator.parameters())

    model = WithAux()
    assert [id(p) for p in model.main_parameters()] == [id(p) for p in model.main.parameters()]
