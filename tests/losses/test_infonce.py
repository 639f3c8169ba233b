import pytest
import torch

from pyg_multirec.losses import InfoNCELoss, MultiModalInfoNCE, SoloSimLoss
from tests.losses.helpers import align_two_views, assert_same_grads


def cos(a, b):
    return torch.dot(a, b) / (a.norm() * b.norm())


def reference_infonce(x1, x2, tau, symmetric, reduction="mean"):
    """Cross-view InfoNCE with cosine critic, term by term."""
    batch = x1.size(0)

    def direction(u, v):
        rows = []
        for i in range(batch):
            denom = sum(torch.exp(cos(u[i], v[j]) / tau) for j in range(batch))
            rows.append(-torch.log(torch.exp(cos(u[i], v[i]) / tau) / denom))
        return torch.stack(rows)

    out = direction(x1, x2)
    if symmetric:
        out = (out + direction(x2, x1)) / 2
    return {"mean": out.mean(), "sum": out.sum(), "none": out}[reduction]


def reference_micro(modal, fused, tau, reduction="mean"):
    """MICRO eq. 10-12 with a dense N x N similarity, one item at a time."""
    num = fused.size(0)

    def ell(u, v, i):  # -I(u_i, v_i): inter-view and intra-view negatives
        pos = torch.exp(cos(u[i], v[i]) / tau)
        neg = sum(
            torch.exp(cos(u[i], v[j]) / tau) + torch.exp(cos(u[i], u[j]) / tau)
            for j in range(num)
            if j != i
        )
        return -torch.log(pos / (pos + neg))

    items = []
    for i in range(num):
        per_modality = [(ell(h_m, fused, i) + ell(fused, h_m, i)) / 2 for h_m in modal]
        items.append(torch.stack(per_modality).mean())
    out = torch.stack(items)
    return {"mean": out.mean(), "sum": out.sum(), "none": out}[reduction]


def _tensors(count, rows, dim, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(rows, dim, generator=gen, dtype=dtype, requires_grad=True) for _ in range(count)
    ]


# InfoNCELoss ----------------------------------------------------------------------------


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_infonce_matches_reference(symmetric, reduction):
    x1, x2 = _tensors(2, 6, 4)
    out = InfoNCELoss(temperature=0.3, symmetric=symmetric, reduction=reduction)(x1, x2)
    ref = reference_infonce(x1, x2, 0.3, symmetric, reduction)
    torch.testing.assert_close(out, ref)
    assert_same_grads(out, ref, (x1, x2))


def test_infonce_symmetry_and_relation_to_solosim():
    x1, x2 = _tensors(2, 6, 4)
    sym = InfoNCELoss(temperature=0.2)
    torch.testing.assert_close(sym(x1, x2), sym(x2, x1))
    one_way = InfoNCELoss(temperature=0.2, symmetric=False)
    torch.testing.assert_close(one_way(x1, x2), SoloSimLoss(temperature=0.2)(x1, x2))


def test_infonce_gradcheck_float64():
    x1, x2 = _tensors(2, 4, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(InfoNCELoss(temperature=0.5), (x1, x2))


def test_infonce_errors():
    x1, x2 = _tensors(2, 6, 4)
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=0)
    with pytest.raises(TypeError, match="temperature"):
        InfoNCELoss(temperature="0.2")
    with pytest.raises(ValueError, match="reduction"):
        InfoNCELoss(reduction="batchmean")
    with pytest.raises(ValueError, match="same shape"):
        InfoNCELoss()(x1, x2[:, :3])
    with pytest.raises(ValueError, match="same dtype and device"):
        InfoNCELoss()(x1.double(), x2)
    with pytest.raises(ValueError, match="at least 2 rows"):
        InfoNCELoss()(x1[:1], x2[:1])
    with pytest.raises(TypeError, match="floating-point"):
        InfoNCELoss()(x1.long(), x2)
    with pytest.raises(ValueError, match="NaN"):
        InfoNCELoss()(x1, torch.full_like(x2, float("nan")))


def test_infonce_it_trains():
    losses = align_two_views(InfoNCELoss())
    assert losses[-1] < 0.5 * losses[0]


# MultiModalInfoNCE ----------------------------------------------------------------------


@pytest.fixture(params=["scaled", "stacked"])
def backward_mode(request, monkeypatch):
    """Both ways of the backward pass, whatever the device: blocks scaled into the gradient
    (the CPU's) or multiplied by [Y, c * Y] (other devices')."""
    from pyg_multirec.losses import infonce

    monkeypatch.setattr(infonce, "_scales_blocks", lambda z: request.param == "scaled")
    return request.param


@pytest.mark.parametrize("block_size", [1, 3, 7, 100])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_micro_matches_dense_reference_for_any_block_size(backward_mode, block_size, reduction):
    h_image, h_text, fused = _tensors(3, 7, 4)
    loss_fn = MultiModalInfoNCE(temperature=0.5, block_size=block_size, reduction=reduction)
    out = loss_fn([h_image, h_text], fused)
    ref = reference_micro([h_image, h_text], fused, 0.5, reduction)
    torch.testing.assert_close(out, ref)
    assert_same_grads(out, ref, (h_image, h_text, fused))


def test_micro_sum_reduction_and_single_modality():
    h, fused = _tensors(2, 5, 3)
    out = MultiModalInfoNCE(temperature=0.2, block_size=2, reduction="sum")((h,), fused)
    torch.testing.assert_close(out, reference_micro([h], fused, 0.2, "sum"))


def test_micro_blocks_agree_without_grad():
    modal = _tensors(2, 9, 4, seed=1)
    fused = _tensors(1, 9, 4, seed=2)[0]
    with torch.no_grad():
        blocked = MultiModalInfoNCE(block_size=2)(modal, fused)
        dense = MultiModalInfoNCE(block_size=9)(modal, fused)
    torch.testing.assert_close(blocked, dense)


def _dense_micro(modal, fused, tau):
    """MICRO eq. 10-12 with dense N x N similarities (vectorised; for larger N)."""
    z = torch.nn.functional.normalize(fused, dim=-1)
    eye = torch.eye(z.size(0), dtype=torch.bool)
    per_modality = []
    for h in modal:
        zm = torch.nn.functional.normalize(h, dim=-1)
        inter, intra_m, intra_z = zm @ z.t() / tau, zm @ zm.t() / tau, z @ z.t() / tau
        pos = inter.diagonal()
        a = torch.cat([inter, intra_m.masked_fill(eye, float("-inf"))], 1).logsumexp(1)
        b = torch.cat([inter.t(), intra_z.masked_fill(eye, float("-inf"))], 1).logsumexp(1)
        per_modality.append(0.5 * (a - pos + b - pos))
    return torch.stack(per_modality).mean(0).mean()


def test_micro_block_rows_capped_on_cpu_with_exact_values(backward_mode):
    # On the CPU, blocks hold at most CPU_MAX_BLOCK_ROWS anchors: N = 2,500 then spans many
    # row blocks (triangles of the symmetric matrices included) whatever block_size says.
    from pyg_multirec.losses.infonce import CPU_MAX_BLOCK_ROWS, _block_rows

    num = 2500
    assert _block_rows(4096, torch.empty(num, 2)) == CPU_MAX_BLOCK_ROWS < num
    assert _block_rows(16, torch.empty(num, 2)) == 16
    modal = _tensors(2, num, 8, dtype=torch.float64)
    fused = _tensors(1, num, 8, dtype=torch.float64, seed=3)[0]
    out = MultiModalInfoNCE(temperature=0.5, block_size=4096)(modal, fused)
    ref = _dense_micro(modal, fused, 0.5)
    torch.testing.assert_close(out, ref.to(out.dtype), rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(out, [*modal, fused])
    ref_grads = torch.autograd.grad(ref, [*modal, fused])
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r.to(g.dtype), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("cache_bytes", [0, 1 << 20])
@pytest.mark.parametrize("block_size", [2, 64])
def test_micro_gradcheck_float64(backward_mode, block_size, cache_bytes):
    h_image, h_text, fused = _tensors(3, 5, 3, dtype=torch.float64)
    loss_fn = MultiModalInfoNCE(temperature=0.5, block_size=block_size, cache_bytes=cache_bytes)

    def fn(a, b, f):
        return loss_fn([a, b], f)

    assert torch.autograd.gradcheck(fn, (h_image, h_text, fused))


@pytest.mark.parametrize("block_size", [8, 64, 1000])
def test_micro_never_keeps_a_dense_similarity_for_backward(block_size):
    num = 64
    modal, fused = _tensors(1, num, 4), _tensors(1, num, 4, seed=1)[0]
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = MultiModalInfoNCE(block_size=block_size, cache_bytes=0)(modal, fused)
    loss.backward()
    assert 0 < max(sizes) < num * num  # O(N F) inputs and O(M N) sums, not (N, N)


def _count_exponentials(monkeypatch):
    """Counts the calls of the blockwise exponential, split at the first backward call."""
    from pyg_multirec.losses import infonce

    calls = []
    compute = infonce._exp_similarity
    monkeypatch.setattr(infonce, "_exp_similarity", lambda *a: calls.append(1) or compute(*a))
    return calls


@pytest.mark.parametrize("num_modal", [1, 2])
@pytest.mark.parametrize("block_size", [3, 8, 100])
def test_micro_cached_backward_equals_recomputed_bitwise(backward_mode, monkeypatch, num_modal,
                                                         block_size):
    num, dim, itemsize = 20, 4, 4
    modal = _tensors(num_modal, num, dim, seed=5)
    fused = _tensors(1, num, dim, seed=6)[0]
    # per row block: M full (rows, N) blocks and M + 1 (rows, N - start) right of the diagonal
    starts = range(0, num, block_size)
    rows = [min(block_size, num - start) for start in starts]
    sizes = [[r * (num - start)] + [r * num, r * (num - start)] * num_modal
             for r, start in zip(rows, starts)]
    blocks = [size * itemsize for block_sizes in sizes for size in block_sizes]
    total = sum(blocks)
    # cache_bytes: all blocks; all but the last; none
    cases = {total: 0, total - 1: 1, 0: len(blocks)}
    results = []
    for cache_bytes, recomputed in cases.items():
        calls = _count_exponentials(monkeypatch)
        out = MultiModalInfoNCE(block_size=block_size, cache_bytes=cache_bytes)(modal, fused)
        assert len(calls) == len(blocks)
        grads = torch.autograd.grad(out, [*modal, fused])
        assert len(calls) - len(blocks) == recomputed
        results.append((out, grads))
    (out, grads), others = results[0], results[1:]
    for out_other, grads_other in others:
        assert torch.equal(out, out_other)
        for g, g_other in zip(grads, grads_other):
            assert torch.equal(g, g_other)


def test_micro_keeps_no_block_without_a_backward_pass(monkeypatch):
    from pyg_multirec.losses import infonce

    budgets = []

    class Recorded(infonce._Blocks):
        def __init__(self, z, block, budget):
            budgets.append(budget)
            super().__init__(z, block, budget)

    monkeypatch.setattr(infonce, "_Blocks", Recorded)
    modal = [t.detach() for t in _tensors(1, 6, 3)]
    fused = _tensors(1, 6, 3, seed=1)[0]
    loss_fn = MultiModalInfoNCE(block_size=4, cache_bytes=1 << 20)
    with torch.no_grad():
        loss_fn(modal, fused)
    loss_fn(modal, fused.detach())  # nothing requires a gradient
    assert budgets == [0, 0]
    loss_fn(modal, fused).backward()
    assert budgets == [0, 0, 1 << 20, 0]  # forward keeps; backward's own buffer keeps nothing


@pytest.mark.parametrize("cache_bytes", [0, 1 << 20])
def test_micro_second_backward_pass_recomputes_the_released_blocks(backward_mode, monkeypatch,
                                                                   cache_bytes):
    """The backward pass releases the kept blocks (scaled in place first, on the CPU): a second pass
    (retain_graph=True) recomputes every block and gives the same gradients."""
    calls = _count_exponentials(monkeypatch)
    modal = _tensors(2, 9, 3)
    fused = _tensors(1, 9, 3, seed=1)[0]
    loss = MultiModalInfoNCE(block_size=4, cache_bytes=cache_bytes)(modal, fused)
    forward_blocks = len(calls)
    first = torch.autograd.grad(loss, [*modal, fused], retain_graph=True)
    after_first = len(calls)
    second = torch.autograd.grad(loss, [*modal, fused])
    for g1, g2 in zip(first, second):
        assert torch.equal(g1, g2)
    # the first pass recomputes only the blocks not kept; the second recomputes them all
    assert after_first - forward_blocks == (forward_blocks if cache_bytes == 0 else 0)
    assert len(calls) - after_first == forward_blocks


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1"])
def test_micro_rejects_bad_cache_bytes(bad):
    with pytest.raises(ValueError, match="'cache_bytes' must be a non-negative integer"):
        MultiModalInfoNCE(cache_bytes=bad)


@pytest.mark.parametrize("tau", [0.05, 0.01])
def test_micro_small_temperature_matches_float64_reference(tau):
    # 2 / 0.01 = 200 leaves float32's exponent range: the sums run in float64 internally
    h, fused = _tensors(2, 9, 4, seed=3)
    out = MultiModalInfoNCE(temperature=tau, block_size=4, reduction="none")([h], fused)
    ref = reference_micro([h.double()], fused.double(), tau, "none")
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)
    # float32 gradients (the reference's flow back through .double() into the float32 leaves)
    assert_same_grads(out, ref, (h, fused), rtol=1e-3, atol=1e-3)


def test_micro_half_precision_inputs_are_summed_in_float32():
    h, fused = _tensors(2, 6, 4, seed=4)
    out = MultiModalInfoNCE(block_size=4)([h.bfloat16()], fused.bfloat16())
    assert out.dtype == torch.bfloat16
    ref = reference_micro([h.bfloat16().double()], fused.bfloat16().double(), 0.5)
    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=2e-2)


def test_micro_under_autocast_matches_float32():
    """Mixed precision: inputs produced by a bf16 autocast layer, forward and backward inside
    the autocast region, agree with the float32 run to bf16 accuracy."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 8)
    h, fused = _tensors(2, 30, 8, seed=5)
    loss = MultiModalInfoNCE(block_size=16)
    ref = loss([layer(h)], layer(fused))
    ref_grads = torch.autograd.grad(ref, [h, fused])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss([layer(h)], layer(fused))
        grads = torch.autograd.grad(out, [h, fused])
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
    for g, rg in zip(grads, ref_grads):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, rg, rtol=5e-2, atol=5e-3)


def test_micro_errors():
    h, fused = _tensors(2, 6, 4)
    with pytest.raises(ValueError, match="temperature"):
        MultiModalInfoNCE(temperature=-1.0)
    with pytest.raises(ValueError, match="block_size"):
        MultiModalInfoNCE(block_size=0)
    with pytest.raises(ValueError, match="reduction"):
        MultiModalInfoNCE(reduction="mean_items")
    with pytest.raises(ValueError, match="'modal' must contain at least one"):
        MultiModalInfoNCE()([], fused)
    with pytest.raises(TypeError, match="'modal' must be a list"):
        MultiModalInfoNCE()(h, fused)
    with pytest.raises(ValueError, match=r"'modal\[1\]' and 'fused' must have the same shape"):
        MultiModalInfoNCE()([h, h[:5]], fused)
    with pytest.raises(ValueError, match="'fused' needs at least 2 rows"):
        MultiModalInfoNCE()([h[:1]], fused[:1])
    with pytest.raises(TypeError, match=r"'modal\[0\]' must be a floating-point"):
        MultiModalInfoNCE()([h.long()], fused)
    with pytest.raises(ValueError, match="'fused' contains NaN"):
        MultiModalInfoNCE()([h], torch.full_like(fused, float("nan")))
    with pytest.raises(ValueError, match=r"'modal\[0\]' and 'fused' must have the same dtype"):
        MultiModalInfoNCE()([h.double()], fused)
    with pytest.raises(ValueError, match="'temperature' 0.001 is too small"):
        MultiModalInfoNCE(temperature=1e-3)([h], fused)


def test_micro_it_trains():
    torch.manual_seed(0)
    latent = torch.randn(40, 4)
    image, text = latent @ torch.randn(4, 6), latent @ torch.randn(4, 5)
    enc_image, enc_text = torch.nn.Linear(6, 8), torch.nn.Linear(5, 8)
    params = [*enc_image.parameters(), *enc_text.parameters()]
    opt = torch.optim.Adam(params, lr=0.05)
    loss_fn, losses = MultiModalInfoNCE(temperature=0.5, block_size=16), []
    for _ in range(30):
        h_image, h_text = enc_image(image), enc_text(text)
        fused = (h_image + h_text) / 2
        loss = loss_fn([h_image, h_text], fused)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_micro_cuda_matches_cpu():
    modal, fused = _tensors(2, 300, 16, seed=5), _tensors(1, 300, 16, seed=6)[0]
    loss_fn = MultiModalInfoNCE(block_size=64)
    out = loss_fn(modal, fused)
    grads = torch.autograd.grad(out, (*modal, fused))
    cuda_inputs = [t.detach().cuda().requires_grad_() for t in (*modal, fused)]
    out_cuda = loss_fn(cuda_inputs[:2], cuda_inputs[2])
    grads_cuda = torch.autograd.grad(out_cuda, cuda_inputs)
    torch.testing.assert_close(out_cuda.cpu(), out)
    for g, g_cuda in zip(grads, grads_cuda):
        torch.testing.assert_close(g_cuda.cpu(), g)
