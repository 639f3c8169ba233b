import pytest
import torch

from pyg_multirec.nn import MultiModalItemGraph, knn_item_graph

NUM_ITEMS = 20


def modality_graphs(num_modalities: int = 2, dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    return [
        knn_item_graph(torch.randn(NUM_ITEMS, 8, generator=gen, dtype=dtype), 4)
        for _ in range(num_modalities)
    ]


def to_dense(edge_index, edge_weight, n=NUM_ITEMS):
    dense = torch.zeros(n, n, dtype=edge_weight.dtype)
    return dense.index_put((edge_index[1], edge_index[0]), edge_weight, accumulate=True)


@pytest.mark.parametrize("init_weights", [None, [0.1, 0.9], [2.0, 1.0, 1.0]])
def test_learnable_matches_dense_softmax_sum(init_weights):
    num_modalities = 3 if init_weights is not None and len(init_weights) == 3 else 2
    graphs = modality_graphs(num_modalities)
    module = MultiModalItemGraph(num_modalities, init_weights=init_weights).double()
    with torch.no_grad():
        module.logits.add_(torch.linspace(-0.5, 0.5, num_modalities, dtype=torch.float64))
    edge_index, edge_weight = module(graphs, num_nodes=NUM_ITEMS)
    dense = to_dense(edge_index, edge_weight)
    logits = module.logits.detach().clone().requires_grad_()
    alpha = torch.exp(logits) / torch.exp(logits).sum()  # eq. 11 weights
    expected = sum(a * to_dense(*g) for a, g in zip(alpha, graphs))
    torch.testing.assert_close(dense, expected)
    probe = torch.randn(NUM_ITEMS, NUM_ITEMS, dtype=torch.float64)
    grad, = torch.autograd.grad((dense * probe).sum(), module.logits)
    expected_grad, = torch.autograd.grad((expected * probe).sum(), logits)
    torch.testing.assert_close(grad, expected_grad)
    assert grad.abs().sum() > 0
    key = edge_index[0] * NUM_ITEMS + edge_index[1]
    assert bool((key[1:] > key[:-1]).all())  # coalesced


def test_initial_weights_are_the_softmax_start():
    module = MultiModalItemGraph(2, init_weights=[0.1, 0.9])
    torch.testing.assert_close(module.weights, torch.tensor([0.1, 0.9]))
    torch.testing.assert_close(MultiModalItemGraph(4).weights, torch.full((4,), 0.25))


def test_fixed_weights_are_used_as_given():
    graphs = modality_graphs(2)
    module = MultiModalItemGraph(2, learnable=False, init_weights=[0.1, 0.9])
    assert list(module.parameters()) == []
    edge_index, edge_weight = module(graphs)
    expected = 0.1 * to_dense(*graphs[0]) + 0.9 * to_dense(*graphs[1])
    torch.testing.assert_close(to_dense(edge_index, edge_weight), expected)


def test_gradcheck_wrt_logits_and_edge_weights():
    graphs = modality_graphs(2)
    module = MultiModalItemGraph(2).double()
    w0 = graphs[0][1].clone().requires_grad_()
    logits = module.logits.detach().clone().requires_grad_()

    def combined(logits, w0):
        alpha = torch.softmax(logits, 0)
        return sum(a * to_dense(*g) for a, g in zip(alpha, [(graphs[0][0], w0), graphs[1]]))

    def ours(logits, w0):
        out = torch.func.functional_call(
            module, {"logits": logits}, ([(graphs[0][0], w0), graphs[1]],))
        return to_dense(*out)

    assert torch.autograd.gradcheck(ours, (logits, w0))
    torch.testing.assert_close(ours(logits, w0), combined(logits, w0))


def test_errors():
    with pytest.raises(ValueError, match="num_modalities must be >= 1"):
        MultiModalItemGraph(0)
    with pytest.raises(ValueError, match="init_weights must have 2 entries"):
        MultiModalItemGraph(2, init_weights=[1.0])
    with pytest.raises(ValueError, match="init_weights must be finite and positive"):
        MultiModalItemGraph(2, init_weights=[1.0, 0.0])
    module = MultiModalItemGraph(2)
    graphs = modality_graphs(2, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"graphs must be a list of 2 \(edge_index, edge_weight"):
        module(graphs[:1])
    with pytest.raises(ValueError, match=r"graphs\[1\] edge_weight must have shape"):
        module([graphs[0], (graphs[1][0], graphs[1][1][:-1])])
    with pytest.raises(ValueError, match=r"graphs\[0\] edge_index must have shape \[2, E\]"):
        module([(graphs[0][0].t(), graphs[0][1]), graphs[1]])


def test_trains_loss_falls():
    torch.manual_seed(0)
    graphs = modality_graphs(2, dtype=torch.float32)
    target = 0.8 * to_dense(*graphs[0]) + 0.2 * to_dense(*graphs[1])
    module = MultiModalItemGraph(2)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = (to_dense(*module(graphs, NUM_ITEMS)) - target).square().sum()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    torch.testing.assert_close(module.weights.detach(), torch.tensor([0.8, 0.2]), atol=0.05,
                               rtol=0)
