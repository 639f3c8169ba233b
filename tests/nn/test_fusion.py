import pytest
import torch

from pyg_multirec.nn import AttentionFusion

NUM_ITEMS, CHANNELS, HIDDEN = 7, 5, 4


def manual_fusion(module, hs):
    # MICRO eq. 7-9, one item and one modality at a time.
    W, b = module.lin.weight, module.lin.bias
    q = module.query.weight.squeeze(0)
    fused, weights = [], []
    for i in range(hs[0].size(0)):
        scores = torch.stack([q @ torch.tanh(W @ h[i] + b) for h in hs])  # eq. 7
        alpha = torch.exp(scores) / torch.exp(scores).sum()  # eq. 8
        fused.append(sum(a * h[i] for a, h in zip(alpha, hs)))  # eq. 9
        weights.append(alpha)
    return torch.stack(fused), torch.stack(weights)


@pytest.mark.parametrize("num_modalities", [1, 2, 3])
def test_matches_manual_formula(num_modalities):
    torch.manual_seed(num_modalities)
    module = AttentionFusion(CHANNELS, HIDDEN).double()
    hs = [torch.randn(NUM_ITEMS, CHANNELS, dtype=torch.float64) for _ in range(num_modalities)]
    fused, weights = module(hs)
    expected_fused, expected_weights = manual_fusion(module, hs)
    torch.testing.assert_close(fused, expected_fused)
    torch.testing.assert_close(weights, expected_weights)
    assert weights.shape == (NUM_ITEMS, num_modalities)
    stacked_fused, stacked_weights = module(torch.stack(hs))
    torch.testing.assert_close(stacked_fused, fused)
    torch.testing.assert_close(stacked_weights, weights)
    grads = torch.autograd.grad(fused.square().sum(), list(module.parameters()),
                                allow_unused=True)
    expected_grads = torch.autograd.grad(expected_fused.square().sum(),
                                         list(module.parameters()), allow_unused=True)
    for got, want in zip(grads, expected_grads):
        if want is None:  # one modality: the weights are constant 1
            assert got is None or torch.all(got == 0)
        else:
            torch.testing.assert_close(got, want)


def test_gradcheck():
    torch.manual_seed(0)
    module = AttentionFusion(CHANNELS, HIDDEN).double()
    hs = torch.randn(2, 3, CHANNELS, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h: module(h), (hs,))


def test_errors():
    module = AttentionFusion(CHANNELS, HIDDEN)
    with pytest.raises(ValueError, match="xs must be a non-empty list"):
        module([])
    with pytest.raises(ValueError, match="of one shape"):
        module([torch.randn(3, CHANNELS), torch.randn(4, CHANNELS)])
    with pytest.raises(ValueError, match=r"xs must be a \[M, N, D\] tensor"):
        module(torch.randn(3, CHANNELS))
    with pytest.raises(ValueError, match="in_channels=5"):
        module([torch.randn(3, 2)])
    with pytest.raises(ValueError, match="at least one modality"):
        module(torch.randn(0, 3, CHANNELS))
    with pytest.raises(ValueError, match="hidden_channels must be a positive int"):
        AttentionFusion(CHANNELS, 0)


def test_trains_loss_falls():
    torch.manual_seed(0)
    # modality 0 is the target for every item; the attention should learn to pick it
    target = torch.randn(NUM_ITEMS, CHANNELS)
    hs = [target, torch.randn(NUM_ITEMS, CHANNELS)]
    module = AttentionFusion(CHANNELS, HIDDEN)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        fused, _ = module(hs)
        loss = (fused - target).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
