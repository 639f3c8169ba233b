import pytest
import torch

from pyg_multirec.models import MF, LightGCN
from pyg_multirec.nn import random_walk_self_loop_weights
from pyg_multirec.train import train
from tests.helpers import assert_learns
from tests.models.test_mf import bpr_by_hand

# 4 users, 6 items; item 5 has no interaction (degree 0)
EDGES = torch.tensor([[0, 0, 1, 1, 1, 2, 3, 3], [0, 2, 1, 2, 4, 3, 0, 4]])
NUM_USERS, NUM_ITEMS, DIM = 4, 6, 3


def dense_propagation(x, edges, num_users, num_layers, normalization="sym"):
    """LightGCN eq. 3-4 with a dense (U + I) x (U + I) matrix: D^-1/2 A D^-1/2 ("sym") or
    D^-1 (A + I) with D the row sums of A + I ("rw-self-loop"), mean of the layers 0..L."""
    n = x.size(0)
    adj = torch.zeros(n, n, dtype=x.dtype)
    for u, i in edges.t().tolist():
        adj[u, num_users + i] = adj[num_users + i, u] = 1.0
    if normalization == "rw-self-loop":
        adj = adj + torch.eye(n, dtype=x.dtype)
        norm_adj = adj / adj.sum(1, keepdim=True)
    else:
        deg = adj.sum(1)
        inv_sqrt = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
        norm_adj = inv_sqrt[:, None] * adj * inv_sqrt[None, :]
    layers = [x]
    for _ in range(num_layers):
        layers.append(norm_adj @ layers[-1])
    return torch.stack(layers).mean(0)


def make(num_layers=2, **kwargs):
    torch.manual_seed(0)
    return LightGCN(NUM_USERS, NUM_ITEMS, EDGES, dim=DIM, num_layers=num_layers, **kwargs).double()


@pytest.mark.parametrize("num_layers", [0, 1, 2, 3])
def test_embed_matches_dense_normalised_adjacency(num_layers):
    model = make(num_layers)
    x = torch.cat([model.user_emb.weight, model.item_emb.weight])
    expected = dense_propagation(x, EDGES, NUM_USERS, num_layers)
    user_out, item_out = model.embed()
    assert user_out.shape == (NUM_USERS, DIM) and item_out.shape == (NUM_ITEMS, DIM)
    torch.testing.assert_close(user_out, expected[:NUM_USERS])
    torch.testing.assert_close(item_out, expected[NUM_USERS:])
    if num_layers > 0:  # an item without interactions keeps only its own layer-0 share
        torch.testing.assert_close(item_out[5], model.item_emb.weight[5] / (num_layers + 1))


@pytest.mark.parametrize("num_layers", [1, 3])
def test_row_normalised_self_loop_graph_matches_dense_reference(num_layers):
    model = make(num_layers, normalization="rw-self-loop")
    x = torch.cat([model.user_emb.weight, model.item_emb.weight])
    expected = dense_propagation(x, EDGES, NUM_USERS, num_layers, "rw-self-loop")
    assert not torch.allclose(expected, dense_propagation(x, EDGES, NUM_USERS, num_layers))
    user_out, item_out = model.embed()
    torch.testing.assert_close(user_out, expected[:NUM_USERS])
    torch.testing.assert_close(item_out, expected[NUM_USERS:])
    # an item without interactions keeps its whole embedding (its row of D^-1 (A + I) is e_i)
    torch.testing.assert_close(item_out[5], model.item_emb.weight[5])
    users, pos, neg = torch.tensor([[0, 1, 3], [2, 4, 0], [5, 3, 1]])
    loss = model.loss(users, pos, neg)["loss"]
    ranking = bpr_by_hand(user_out[users], item_out[pos], item_out[neg], 0.0, "squared")
    ego = (model.user_emb.weight[users], model.item_emb.weight[pos], model.item_emb.weight[neg])
    reg = bpr_by_hand(*ego, 1.0, "squared") - bpr_by_hand(*ego, 0.0, "squared")
    torch.testing.assert_close(loss, ranking + 1e-4 * reg)
    assert model.graph_weight is not None and "graph_weight" not in model.state_dict()


def test_random_walk_self_loop_weights_is_row_stochastic():
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    edges, weight = random_walk_self_loop_weights(edge_index, 4)
    dense = torch.zeros(4, 4).index_put_((edges[1], edges[0]), weight, accumulate=True)
    expected = torch.tensor(
        [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.float
    )
    torch.testing.assert_close(dense, expected / expected.sum(1, keepdim=True))
    with pytest.raises(ValueError, match=r"edge_index entries must lie in \[0, 2\)"):
        random_walk_self_loop_weights(edge_index, 2)
    with pytest.raises(ValueError, match="edge_index must have shape"):
        random_walk_self_loop_weights(edge_index.t(), 4)


def test_zero_layers_is_mf():
    model = make(0)
    mf = MF(NUM_USERS, NUM_ITEMS, dim=DIM).double()
    mf.load_state_dict({k: v for k, v in model.state_dict().items() if k != "graph"})
    for ours, ref in zip(model.embed(), mf.embed()):
        torch.testing.assert_close(ours, ref)
    batch = torch.tensor([0, 3]), torch.tensor([2, 4]), torch.tensor([5, 1])
    torch.testing.assert_close(model.loss(*batch)["loss"], mf.loss(*batch)["loss"])


@pytest.mark.parametrize("reg_form", ["squared", "norm"])
def test_loss_matches_hand_formula_on_the_ego_embeddings(reg_form):
    model = make(2, reg_weight=0.2, reg_form=reg_form)
    users, pos, neg = torch.tensor([[0, 1, 3, 3], [2, 4, 0, 4], [5, 3, 1, 2]])
    x = torch.cat([model.user_emb.weight, model.item_emb.weight])
    out = dense_propagation(x, EDGES, NUM_USERS, 2)
    user_out, item_out = out[:NUM_USERS], out[NUM_USERS:]
    ranking = bpr_by_hand(user_out[users], item_out[pos], item_out[neg], 0.0, reg_form)
    ego = (model.user_emb.weight[users], model.item_emb.weight[pos], model.item_emb.weight[neg])
    reg = bpr_by_hand(*ego, 1.0, reg_form) - bpr_by_hand(*ego, 0.0, reg_form)
    expected = ranking + 0.2 * reg
    loss = model.loss(users, pos, neg)["loss"]
    torch.testing.assert_close(loss, expected)
    params = [model.user_emb.weight, model.item_emb.weight]
    for grad, ref in zip(torch.autograd.grad(loss, params), torch.autograd.grad(expected, params)):
        torch.testing.assert_close(grad, ref)


def test_state_dict_and_reset_parameters():
    model = make()
    # the checkpoints of examples/lightgcn.py hold exactly these entries: the graph is
    # rebuilt from the training pairs, not saved
    assert set(model.state_dict()) == {"user_emb.weight", "item_emb.weight"}
    before = model.embed()[0].detach().clone()
    model.reset_parameters()
    assert not torch.allclose(model.embed()[0], before)
    assert repr(model) == (
        "LightGCN(4, 6, dim=3, num_layers=2, reg_weight=0.0001, reg_form='squared', "
        "normalization='sym')"
    )


@pytest.mark.parametrize("normalization", ["sym", "rw-self-loop"])
def test_loads_checkpoints_that_hold_the_graph(normalization):
    old = make(normalization=normalization)
    legacy = {**old.state_dict(), "graph": old.graph.clone()}
    if old.graph_weight is not None:
        legacy["graph_weight"] = old.graph_weight.clone()
    new = make(normalization=normalization)
    new.reset_parameters()
    new.load_state_dict(legacy)  # strict: the legacy entries are dropped, nothing else
    assert torch.equal(new.graph, old.graph)
    for a, b in zip(new.embed(), old.embed()):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        new.load_state_dict({**legacy, "other": torch.zeros(1)})


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"edge_index must have shape \[2, num_interactions\]"):
        LightGCN(NUM_USERS, NUM_ITEMS, EDGES.t())
    with pytest.raises(TypeError, match="edge_index must be an integer tensor"):
        LightGCN(NUM_USERS, NUM_ITEMS, EDGES.float())
    with pytest.raises(ValueError, match=r"item ids in edge_index must lie in \[0, 4\)"):
        LightGCN(NUM_USERS, 4, EDGES)
    with pytest.raises(ValueError, match="num_users must be a positive int"):
        LightGCN(0, NUM_ITEMS, EDGES)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        LightGCN(NUM_USERS, NUM_ITEMS, EDGES, dim=0)
    with pytest.raises(ValueError, match="num_layers must be a non-negative int"):
        LightGCN(NUM_USERS, NUM_ITEMS, EDGES, num_layers=-1)
    with pytest.raises(ValueError, match="reg_form"):
        LightGCN(NUM_USERS, NUM_ITEMS, EDGES, reg_form="l1")
    with pytest.raises(ValueError, match="normalization must be one of"):
        LightGCN(NUM_USERS, NUM_ITEMS, EDGES, normalization="rw")


@pytest.mark.parametrize("reg_form", ["squared", "norm"])
def test_lightgcn_learns(tiny_data, reg_form):
    torch.manual_seed(0)
    model = LightGCN(
        tiny_data["user"].num_nodes,
        tiny_data["item"].num_nodes,
        tiny_data["user", "train", "item"].edge_index,
        dim=16,
        num_layers=2,
        reg_form=reg_form,
    )
    result = train(model, tiny_data, epochs=30, batch_size=256, lr=0.01, patience=10,
                   progress=False)  # fmt: skip
    assert_learns(result, tiny_data, loss_key="train_loss")
