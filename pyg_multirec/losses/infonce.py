import math
from collections.abc import Callable, Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import Module

from pyg_multirec._checks import (
    check_count,
    check_float_tensor,
    check_min_rows,
    check_paired,
    check_reduction,
    check_temperature,
    reduce,
)

INFONCE_TEMPERATURE = 0.2  # SEA's temperature, shared by its alignment variants
MICRO_TEMPERATURE = 0.5  # MICRO paper and official code
DEFAULT_BLOCK_SIZE = 1024
# On the CPU, row blocks of at most this many anchors: (block, N) buffers that stay near the
# cache while they are exponentiated, summed, scaled and multiplied, and a finer triangle of
# the symmetric matrices (benchmarks/infonce.py --cpu-rows, F = 64, one thread, forward +
# backward: 1,349 items 0.055 s at 128 rows, 0.092 s at 1,024; 7,050 items 1.90 s at 128,
# 2.04 s at 64, 2.30 s at 256, 2.66 s at 1,024).
CPU_MAX_BLOCK_ROWS = 128
# The forward's exponential blocks are kept for backward (which then skips recomputing them)
# while they take at most this many bytes: all of them up to about 2,150 items with two
# modalities (ml100k's 1,349: 25 MiB), a bounded share of larger catalogues (Baby's 7,050
# items have 669 MiB of blocks; benchmarks/infonce.py).
DEFAULT_CACHE_BYTES = 64 * 2**20
HALF = 0.5
# Headroom (in log space) kept between exp(+-1 / tau) and the working dtype's range ends
EXP_RANGE_MARGIN = 8.0


def _paired_cosine_logits(x1: Tensor, x2: Tensor, temperature: float) -> Tensor:
    r"""Checks two paired views :math:`(B, F)`, :math:`B \geq 2`, and returns the
    :math:`(B, B)` cosine similarities of their rows divided by ``temperature``."""
    check_paired(x1, x2, "x1", "x2", min_rows=2)
    z1, z2 = F.normalize(x1, dim=-1), F.normalize(x2, dim=-1)
    return z1 @ z2.t() / temperature


class InfoNCELoss(Module):
    r"""The InfoNCE loss of the `"Representation Learning with Contrastive
    Predictive Coding" <https://arxiv.org/abs/1807.03748>`_ paper between two
    views with in-batch negatives and a cosine critic, the alternative
    alignment loss of the "It is Never Too Late to Mend: Separate Learning for
    Multimedia Recommendation" (SEA) paper (variants of Table 4, appendix A.4):

    .. math::
        \ell^{(1 \to 2)}_i = -\log
        \frac{\exp(\cos(\mathbf{x}^{(1)}_i, \mathbf{x}^{(2)}_i) / \tau)}
        {\sum_{j=1}^{B} \exp(\cos(\mathbf{x}^{(1)}_i, \mathbf{x}^{(2)}_j) / \tau)},
        \qquad
        \ell_i = \tfrac{1}{2} \left(\ell^{(1 \to 2)}_i + \ell^{(2 \to 1)}_i\right)

    when :obj:`symmetric=True`, and :math:`\ell_i = \ell^{(1 \to 2)}_i` (which
    equals :class:`SoloSimLoss`) otherwise. The negatives are the other samples
    of the other view. The batch similarity matrix is :math:`(B, B)`: pass a
    batch of rows, not all items.

    Args:
        temperature (float, optional): Temperature :math:`\tau > 0`.
            (default: :obj:`0.2`)
        symmetric (bool, optional): Average both directions.
            (default: :obj:`True`)
        reduction (str, optional): :obj:`"mean"`, :obj:`"sum"` or
            :obj:`"none"` over the batch. (default: :obj:`"mean"`)

    Shapes:
        - **input:** first view :math:`(B, F)`, second view :math:`(B, F)`, :math:`B \geq 2`
        - **output:** scalar, or :math:`(B)` if :obj:`reduction="none"`
    """

    def __init__(
        self,
        temperature: float = INFONCE_TEMPERATURE,
        symmetric: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.symmetric = bool(symmetric)
        self.reduction = check_reduction(reduction)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        logits = _paired_cosine_logits(x1, x2, self.temperature)
        positive = logits.diagonal()
        out = logits.logsumexp(dim=1) - positive
        if self.symmetric:
            out = HALF * (out + logits.logsumexp(dim=0) - positive)
        return reduce(out, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, symmetric={self.symmetric}, "
            f"reduction={self.reduction!r}"
        )


def _exponent_limit(dtype: torch.dtype, num: int) -> float:
    r"""The largest :math:`1 / \tau` for which :math:`e^{\pm 1/\tau}` are normal numbers of
    ``dtype`` and a sum of ``num`` values up to :math:`e^{1/\tau}` stays finite."""
    info = torch.finfo(dtype)
    return min(-math.log(info.tiny), math.log(info.max) - math.log(num)) - EXP_RANGE_MARGIN


def _working_dtype(dtype: torch.dtype, temperature: float, num: int) -> torch.dtype:
    r"""float32 (float64 for float64 inputs), or float64 where :math:`e^{\pm 1/\tau}` leaves
    float32's range (see :func:`_exponent_limit`): then the sums need no stabiliser.
    Half-precision inputs are summed in float32."""
    for candidate in (torch.promote_types(dtype, torch.float32), torch.float64):
        if 1.0 / temperature <= _exponent_limit(candidate, num):
            return candidate
    smallest = 1.0 / _exponent_limit(torch.float64, num)
    raise ValueError(
        f"'temperature' {temperature} is too small: exp(1 / temperature) leaves float64's "
        f"range (use temperature >= {smallest:.4g})"
    )


def _exp_similarity(rows: Tensor, cols: Tensor, start: int, out: Tensor, mask_self: bool) -> Tensor:
    r"""``out`` :math:`\leftarrow \exp(\text{rows} \cdot \text{cols}^\top)` (``rows``
    carry the factor :math:`1 / \tau`); with ``mask_self`` the entries ``(i, start + i)``
    (an item against itself) are zero."""
    torch.mm(rows, cols.t(), out=out)
    out.exp_()
    if mask_self:
        out.diagonal(offset=start).zero_()
    return out


def _block_rows(block_size: int, z: Tensor) -> int:
    """Anchor rows per block: ``block_size``, at most ``CPU_MAX_BLOCK_ROWS`` on the CPU."""
    if z.device.type == "cpu":
        block_size = min(block_size, CPU_MAX_BLOCK_ROWS)
    return min(block_size, z.size(0))


class _Blocks:
    """Work buffers for the ``(rows, cols)`` exponential blocks, in the order of use: a new
    tensor for each block that still fits in what is left of ``budget`` bytes (kept for
    backward in ``kept``), a view of one flat buffer, reused, for each other block
    (``None`` in ``kept``)."""

    def __init__(self, z: Tensor, block: int, budget: int) -> None:
        self.kept: list[Optional[Tensor]] = []
        self.left = budget
        self.z, self.size = z, block * z.size(0)
        self.storage: Optional[Tensor] = None  # allocated at the first block not kept

    def next(self, rows: int, cols: int) -> Tensor:
        size = rows * cols * self.z.element_size()
        if size <= self.left:
            self.left -= size
            self.kept.append(self.z.new_empty(rows, cols))
            return self.kept[-1]
        self.kept.append(None)
        if self.storage is None:
            self.storage = self.z.new_empty(self.size)
        return self.storage[: rows * cols].view(rows, cols)


class _LogDenominators(torch.autograd.Function):
    r"""Per-item :math:`\frac{1}{2|\mathcal{M}|} \sum_m (L^{A}_{m,i} + L^{B}_{m,i})`, the
    log-denominators of MICRO eq. 11 (:math:`L^A`, anchor :math:`\mathbf{z}^m_i`) and
    eq. 12 (:math:`L^B`, anchor :math:`\mathbf{z}_i`) for unit rows:

    .. math::
        L^A_{m,i} = \log \Big(\sum_j e^{S^{mz}_{ij}} + \sum_{j \neq i} e^{S^{mm}_{ij}}\Big),
        \qquad
        L^B_{m,i} = \log \Big(\sum_j e^{S^{mz}_{ji}} + \sum_{j \neq i} e^{S^{zz}_{ij}}\Big),

    with :math:`S^{xy} = \mathbf{x} \mathbf{y}^\top / \tau`. Only the :math:`2M + 1`
    distinct matrices are formed, one row block at a time: row sums of
    :math:`e^{S^{mz}}` give :math:`L^A`, its column sums give :math:`L^B`, so one
    exponential serves both. The symmetric :math:`S^{mm}` and :math:`S^{zz}` are formed
    only on and above the diagonal blocks (a block of rows against the columns from its
    first row on): each block above the diagonal serves its rows by its row sums and its
    columns by its column sums, which nearly halves their products and exponentials.
    Cosines lie in :math:`[-1, 1]`, so the entries lie in
    :math:`[e^{-1/\tau}, e^{1/\tau}]` and need no stabiliser as long as that range (and
    :math:`N e^{1/\tau}`) fits the working dtype (:func:`_working_dtype`). Backward
    applies the closed-form gradient
    :math:`\partial L / \partial S_{ij} = e^{S_{ij}} / e^{L}` to each block: the forward's
    blocks while they fit ``cache_bytes`` (:class:`_Blocks`), the others recomputed
    once; beyond those blocks only the :math:`O(|\mathcal{M}| N)` sums are kept between
    the passes."""

    @staticmethod
    def forward(ctx, tau: float, block_size: int, cache_bytes: int, fused: Tensor,
                *modal: Tensor) -> Tensor:
        dtype = _working_dtype(fused.dtype, tau, fused.size(0))
        z, zs = fused.to(dtype), [z_m.to(dtype) for z_m in modal]
        # the anchors carry 1 / tau: the products are then S itself, with no extra pass
        q, qs = z / tau, [z_m / tau for z_m in zs]
        num, block = z.size(0), _block_rows(block_size, z)
        # blocks are kept only for a backward pass to come
        work = _Blocks(z, block, cache_bytes if any(ctx.needs_input_grad[3:]) else 0)
        row_a = z.new_zeros(len(zs), num)  # sum_j e^{S^mz_ij} + sum_{j!=i} e^{S^mm_ij}
        col_mz = z.new_zeros(len(zs), num)  # sum_j e^{S^mz_ji}
        row_zz = z.new_zeros(num)  # sum_{j!=i} e^{S^zz_ij}
        for start in range(0, num, block):
            end = min(start + block, num)
            rows, size = slice(start, end), end - start
            # columns start.. of a symmetric S
            e_zz = _exp_similarity(q[rows], z[start:], 0, work.next(size, num - start), True)
            _add_symmetric_sums(e_zz, row_zz, start, end)
            for m, z_m in enumerate(zs):
                e_mz = _exp_similarity(qs[m][rows], z, start, work.next(size, num), False)
                row_a[m, rows] += e_mz.sum(1)
                col_mz[m] += e_mz.sum(0)
                e_mm = _exp_similarity(qs[m][rows], z_m[start:], 0, work.next(size, num - start),
                                       True)
                _add_symmetric_sums(e_mm, row_a[m], start, end)
        row_b = col_mz + row_zz
        ctx.tau, ctx.block, ctx.dtype_in = tau, block, fused.dtype
        ctx.cached = work.kept
        ctx.save_for_backward(z, row_a, row_b, *zs)
        return ((row_a.log() + row_b.log()).mean(0) * HALF).to(fused.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Optional[Tensor], ...]:
        z, row_a, row_b, *zs = ctx.saved_tensors
        tau, block, (num, dim) = ctx.tau, ctx.block, z.shape
        weight = grad_out.to(z.dtype) * (HALF / len(zs))
        # dL/dS_ij = G_ij = E_ij (a_i + b_j) with E = e^S. A block's rows need G Y, its
        # columns G^T X; the symmetric E^{mm}, E^{zz} (a = b) need only their blocks on and
        # above the diagonal. Two ways (_scales_blocks): scale E into G in place, then one
        # width-F product each (CPU); or leave E as it is and use G Y = a * (E Y) + E (b * Y),
        # one width-2F product with [Y, b * Y] (fewer passes over E where memory bandwidth
        # bounds the products).
        scale_a = (weight / row_a).unsqueeze(-1)  # (M, N, 1): anchor rows, eq. 11
        scale_b = (weight / row_b).unsqueeze(-1)  # (M, N, 1): columns of S^mz, eq. 12
        scale_zz = scale_b.sum(0)  # S^zz is shared by all modalities
        scaled = _scales_blocks(z)
        if scaled:
            y_zz, y_b, y_a = z, [z] * len(zs), zs
        else:
            y_zz = torch.cat([z, scale_zz * z], dim=-1)
            y_b = [torch.cat([z, s_b * z], dim=-1) for s_b in scale_b]
            y_a = [torch.cat([z_m, s_a * z_m], dim=-1) for z_m, s_a in zip(zs, scale_a)]
        grad_z = torch.zeros_like(z)
        grad_zs = [torch.zeros_like(z_m) for z_m in zs]
        q, qs = z / tau, [z_m / tau for z_m in zs]
        # The forward's blocks (None: recompute that block), each released once used (and
        # scaled in place first if ``scaled``); a second backward pass (retain_graph)
        # recomputes them all.
        cached, ctx.cached = ctx.cached, [None] * len(ctx.cached)
        cached.reverse()  # popped from the end, in the forward's order
        work = _Blocks(z, block, 0)

        def grad_block(rows: Tensor, cols: Tensor, start: int, mask_self: bool, scale_rows: Tensor,
                       scale_cols: Tensor) -> Tensor:
            """The block's G if ``scaled``, else its E: the forward's or recomputed."""
            e = cached.pop()
            if e is None:
                e = _exp_similarity(rows, cols, start, work.next(rows.size(0), cols.size(0)),
                                    mask_self)
            # only on the CPU, where a block has at most CPU_MAX_BLOCK_ROWS rows, so the
            # broadcast sum is a small temporary
            return e.mul_(scale_rows + scale_cols.t()) if scaled else e

        def product(g: Tensor, y: Tensor, scale: Tensor) -> Tensor:
            """G Y: the product itself if ``scaled``, else from E [Y, c * Y]."""
            prod = g @ y
            return prod if scaled else scale * prod[:, :dim] + prod[:, dim:]

        for start in range(0, num, block):
            end = min(start + block, num)
            rows = slice(start, end)
            g_zz = grad_block(q[rows], z[start:], 0, True, scale_zz[rows], scale_zz[start:])
            _symmetric_grad(g_zz, y_zz, scale_zz, grad_z, start, end, product)
            for m, z_m in enumerate(zs):
                g_mz = grad_block(qs[m][rows], z, start, False, scale_a[m, rows], scale_b[m])
                grad_zs[m][rows] += product(g_mz, y_b[m], scale_a[m, rows])
                grad_z += product(g_mz.t(), y_a[m][rows], scale_b[m])
                g_mm = grad_block(qs[m][rows], z_m[start:], 0, True, scale_a[m, rows],
                                  scale_a[m, start:])
                _symmetric_grad(g_mm, y_a[m], scale_a[m], grad_zs[m], start, end, product)
        needs = ctx.needs_input_grad
        grads = [g.div_(tau) if need else None for g, need in zip([grad_z, *grad_zs], needs[3:])]
        return None, None, None, *[None if g is None else g.to(ctx.dtype_in) for g in grads]


def _scales_blocks(z: Tensor) -> bool:
    """Whether the backward pass scales each block into the gradient (on the CPU, whose
    small blocks stay in cache) rather than multiplying it by ``[Y, c * Y]`` (elsewhere,
    e.g. a GPU's 4,096-row blocks, where each pass over a block costs memory bandwidth)."""
    return z.device.type == "cpu"


def _add_symmetric_sums(upper: Tensor, sums: Tensor, start: int, end: int) -> None:
    r"""Adds the row sums of a symmetric :math:`E` held as its row block ``start:end``
    from column ``start`` on (``upper``): the rows get the block's row sums, the rows
    past ``end`` the column sums of its part right of the diagonal block."""
    sums[start:end] += upper.sum(1)
    if end < sums.size(0):
        sums[end:] += upper[:, end - start :].sum(0)


def _symmetric_grad(upper: Tensor, y: Tensor, scale: Tensor, grad: Tensor, start: int,
                    end: int, product: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
    r"""Adds :math:`\mathbf{G} \mathbf{Y}` for a symmetric gradient block held as in
    :func:`_add_symmetric_sums` (``product`` forms it from the block, ``y`` and ``scale``):
    its rows ``start:end`` by the block, the rows past ``end`` by the transpose of its part
    right of the diagonal block."""
    grad[start:end] += product(upper, y[start:], scale[start:end])
    if end < grad.size(0):
        grad[end:] += product(upper[:, end - start :].t(), y[start:end], scale[end:])


class MultiModalInfoNCE(Module):
    r"""The multimodal contrastive loss of the `"Latent Structure Mining with
    Contrastive Modality Fusion for Multimedia Recommendation"
    <https://arxiv.org/abs/2111.00678>`_ (MICRO) paper (eq. 10-12), which pulls
    each modality-aware item representation :math:`\mathbf{h}^m_i` towards the
    fused representation :math:`\mathbf{h}_i`:

    .. math::
        \mathcal{L}_C = \frac{1}{|\mathcal{I}|} \sum_{i \in \mathcal{I}}
        \frac{1}{|\mathcal{M}|} \sum_{m \in \mathcal{M}} \frac{1}{2}
        \left( \ell(\mathbf{h}^m_i, \mathbf{h}_i) + \ell(\mathbf{h}_i, \mathbf{h}^m_i) \right),

    .. math::
        \ell(\mathbf{u}_i, \mathbf{v}_i) = -\log
        \frac{e^{\theta(\mathbf{u}_i, \mathbf{v}_i) / \tau}}
        {e^{\theta(\mathbf{u}_i, \mathbf{v}_i) / \tau}
        + \sum_{j \neq i} e^{\theta(\mathbf{u}_i, \mathbf{v}_j) / \tau}
        + \sum_{j \neq i} e^{\theta(\mathbf{u}_i, \mathbf{u}_j) / \tau}},

    with :math:`\theta` the cosine similarity: the negatives of an anchor are
    all other items both in the other view (inter-view) and in its own view
    (intra-view), as in GRACE. :math:`\ell = -I` of the paper's eq. 11-12.

    Only the :math:`2|\mathcal{M}| + 1` distinct similarity matrices
    (:math:`\mathbf{h}^m` against :math:`\mathbf{h}`, :math:`\mathbf{h}^m` against
    itself, :math:`\mathbf{h}` against itself) are formed, :obj:`block_size` rows at a
    time: the row sums of :math:`e^{\theta(\mathbf{h}^m_i, \mathbf{h}_j)/\tau}` give the
    denominators of eq. 11 and its column sums those of eq. 12. The backward pass
    applies the closed-form softmax gradient to each block: the forward keeps its blocks
    of exponentials while they fit :obj:`cache_bytes` (a bounded cache; all blocks of
    1,349 items and two modalities take 25 MiB on the CPU, which the default covers), and
    the backward pass recomputes the others once; on the CPU each block of the gradient
    :math:`\partial \mathcal{L} / \partial S_{ij} = e^{S_{ij}} (a_i + b_j)` is scaled
    once, in place, and serves its rows and its columns with one product each (elsewhere the
    unscaled block is multiplied by :math:`[\mathbf{Y}, c \odot \mathbf{Y}]`). Kept and
    recomputed blocks give bitwise the same values. So the largest intermediate is
    :math:`(\mathrm{block\_size}, N)`, never :math:`(N, N)`, and the memory kept for
    backward is :math:`O(|\mathcal{M}| N)` on top of the inputs and the cache.
    Cosines lie in :math:`[-1, 1]`, so the exponentials need no stabiliser; the sums run
    in float32 (float64 for float64 inputs), or in float64 when :math:`e^{1/\tau}` would
    leave float32's range (:math:`\tau` below about 0.013 to 0.015, depending
    on :math:`N`); a :math:`\tau` too small for float64 raises a :class:`ValueError`.

    Args:
        temperature (float, optional): Temperature :math:`\tau > 0`.
            (default: :obj:`0.5`)
        block_size (int, optional): Number of anchor rows per block (at most
            128 on the CPU, where smaller blocks are faster).
            (default: :obj:`1024`)
        cache_bytes (int, optional): Bytes of exponential blocks kept from the
            forward for the backward pass (:obj:`0`: recompute them all).
            (default: :obj:`64 * 2**20`, 64 MiB)
        reduction (str, optional): :obj:`"mean"`, :obj:`"sum"` or
            :obj:`"none"` over the items (the per-item value is the average
            over modalities and both directions). (default: :obj:`"mean"`)

    Shapes:
        - **input:** modality representations: a list of :math:`|\mathcal{M}| \geq 1`
          tensors :math:`(N, F)`, fused representation :math:`(N, F)`, :math:`N \geq 2`
        - **output:** scalar, or :math:`(N)` if :obj:`reduction="none"`
    """

    def __init__(
        self,
        temperature: float = MICRO_TEMPERATURE,
        block_size: int = DEFAULT_BLOCK_SIZE,
        reduction: str = "mean",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        super().__init__()
        check_count(block_size, "'block_size'")
        self.temperature = check_temperature(temperature)
        self.block_size = block_size
        self.cache_bytes = check_count(cache_bytes, "'cache_bytes'", minimum=0)
        self.reduction = check_reduction(reduction)

    def forward(self, modal: Sequence[Tensor], fused: Tensor) -> Tensor:
        if isinstance(modal, Tensor) or not isinstance(modal, (list, tuple)):
            raise TypeError(f"'modal' must be a list of tensors (got {type(modal).__name__})")
        if len(modal) == 0:
            raise ValueError("'modal' must contain at least one modality (got an empty list)")
        check_float_tensor(fused, "fused", dim=2)
        check_min_rows(fused, "fused")
        for m, h_m in enumerate(modal):
            check_paired(h_m, fused, f"modal[{m}]", "fused")

        z = F.normalize(fused, dim=-1)
        zs = [F.normalize(h_m, dim=-1) for h_m in modal]
        # MICRO eq. 10-12: the positive's logit appears once in each direction's numerator
        positive = torch.stack([(z_m * z).sum(dim=-1) for z_m in zs]).mean(0) / self.temperature
        log_denominator = _LogDenominators.apply(
            self.temperature, self.block_size, self.cache_bytes, z, *zs
        )
        return reduce(log_denominator - positive, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, block_size={self.block_size}, "
            f"reduction={self.reduction!r}, cache_bytes={self.cache_bytes}"
        )
