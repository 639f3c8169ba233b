"""Approximate nearest neighbours with `FAISS <https://github.com/facebookresearch/faiss>`_.

FAISS is an optional dependency (``pip install faiss-cpu``, or
``pip install "pyg_multirec[faiss]"``), imported only when one of these functions runs.
Two users in the library:

* kNN item graphs at large catalogues: :func:`approximate_topk_cosine` selects each item's
  neighbours with an inner-product index over L2-normalised features, then recomputes the
  cosine of every selected pair exactly (``backend="faiss"`` of
  :func:`~pyg_multirec.nn.knn_item_graph` and :class:`~pyg_multirec.nn.KNNStructureLayer`);
* top-:math:`K` serving: :func:`build_index` over item embeddings (raw inner product, the
  score of :meth:`~pyg_multirec.models.Recommender.score`), saved with
  :func:`save_index` beside a metadata file that :func:`load_index` checks against the
  embeddings it is asked to serve.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

INSTALL_HINT = 'pip install faiss-cpu (or pip install "pyg_multirec[faiss]")'
INDEX_KINDS = ("hnsw", "ivf", "flat")
# Defaults. HNSW: 16 links per node, candidate lists of 40 while building and 64 while
# searching gave recall@10 >= 0.99 on 100k 384-d synthetic items (benchmarks/ann.py).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 64
IVF_NPROBE = 16
# k-means of the IVF coarse quantiser: this many training points per list (FAISS warns
# below 39).
IVF_TRAIN_POINTS_PER_LIST = 64
DEFAULT_SEARCH_BATCH = 16_384  # query / insertion rows converted to float32 at a time
COSINE_EPS = 1e-12  # as pyg_multirec.nn.knn: an all-zero row gets cosine 0 to every item
METADATA_SUFFIX = ".json"
METADATA_FORMAT = 1
FINGERPRINT_ROWS = 4096  # rows hashed at a time


def import_faiss() -> Any:
    """Imports :mod:`faiss`, or raises an :class:`ImportError` that says what to install."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(f"this needs FAISS, which is not installed: {INSTALL_HINT}") from err
    return faiss


def _check_positive(name: str, value: Optional[int], allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int (got {value!r})")


@dataclass(frozen=True)
class FaissANN:
    r"""Settings of a FAISS inner-product index (``backend=FaissANN(...)``; the string
    ``"faiss"`` means ``FaissANN()``).

    Args:
        kind (str, optional): ``'hnsw'`` (graph index, no training; the default),
            ``'ivf'`` (inverted lists over a k-means coarse quantiser) or ``'flat'``
            (exact brute force, for checks). (default: :obj:`'hnsw'`)
        hnsw_m (int, optional): HNSW links per node. (default: :obj:`16`)
        ef_construction (int, optional): HNSW candidate list while building.
            (default: :obj:`40`)
        ef_search (int, optional): HNSW candidate list while searching (raised to the
            number of results asked for when smaller). (default: :obj:`64`)
        nlist (int, optional): IVF lists; default :math:`\lceil\sqrt{N}\rceil`, capped so
            that each list has 64 training points. (default: :obj:`None`)
        nprobe (int, optional): IVF lists visited per query. (default: :obj:`16`)
        seed (int, optional): Seed of the IVF training sample and k-means.
            (default: :obj:`0`)
        batch_size (int, optional): Rows converted to float32 and added / searched at a
            time. (default: :obj:`16384`)
    """

    kind: str = "hnsw"
    hnsw_m: int = HNSW_M
    ef_construction: int = HNSW_EF_CONSTRUCTION
    ef_search: int = HNSW_EF_SEARCH
    nlist: Optional[int] = None
    nprobe: int = IVF_NPROBE
    seed: int = 0
    batch_size: int = DEFAULT_SEARCH_BATCH

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"FaissANN kind must be one of {INDEX_KINDS} (got {self.kind!r})")
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "batch_size"):
            _check_positive(name, getattr(self, name))
        _check_positive("nlist", self.nlist, allow_none=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int (got {self.seed!r})")

    def resolved_nlist(self, num_vectors: int) -> int:
        """The number of IVF lists used for ``num_vectors`` vectors."""
        nlist = self.nlist if self.nlist is not None else math.ceil(math.sqrt(num_vectors))
        return max(1, min(nlist, num_vectors // IVF_TRAIN_POINTS_PER_LIST or 1))


Backend = Union[str, FaissANN]
BACKENDS = ("exact", "faiss")


def resolve_backend(backend: Backend) -> Optional[FaissANN]:
    """``None`` for ``'exact'``, the :class:`FaissANN` settings for ``'faiss'`` or a
    :class:`FaissANN`; anything else raises a :class:`ValueError`."""
    if isinstance(backend, FaissANN):
        return backend
    if backend == "exact":
        return None
    if backend == "faiss":
        return FaissANN()
    raise ValueError(f"backend must be one of {BACKENDS} or a FaissANN (got {backend!r})")


# ----------------------------------------------------------------------------------------
# building and searching
def _rows_float32(x: Tensor, start: int, stop: int, normalize: bool) -> np.ndarray:
    rows = x[start:stop].detach().to("cpu", torch.float32)
    if normalize:
        rows = rows / rows.norm(dim=-1, keepdim=True).clamp_min(COSINE_EPS)
    return np.ascontiguousarray(rows.numpy())


def build_index(x: Tensor, config: FaissANN | None = None, normalize: bool = False) -> Any:
    r"""A FAISS inner-product index over the rows of ``x`` :math:`(N, d)` (row ``i`` gets
    id ``i``). With ``normalize``, rows are L2-normalised first (inner product = cosine).
    Rows are converted to float32 ``config.batch_size`` at a time, so the only full copy
    is the index's own."""
    faiss = import_faiss()
    config = config or FaissANN()
    if x.dim() != 2 or x.size(0) < 1 or x.size(1) < 1:
        raise ValueError(f"x must be a non-empty 2-D [num_vectors, dim] tensor "
                         f"(got {tuple(x.shape)})")
    num, dim = x.shape
    metric = faiss.METRIC_INNER_PRODUCT
    if config.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, metric)
        index.hnsw.efConstruction = config.ef_construction
    elif config.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = config.resolved_nlist(num)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
        index.cp.seed = config.seed
        sample_size = min(num, nlist * IVF_TRAIN_POINTS_PER_LIST)
        gen = torch.Generator().manual_seed(config.seed)
        sample = torch.randperm(num, generator=gen)[:sample_size].sort().values
        rows = x.detach()[sample].to("cpu", torch.float32)
        if normalize:
            rows = rows / rows.norm(dim=-1, keepdim=True).clamp_min(COSINE_EPS)
        index.train(np.ascontiguousarray(rows.numpy()))
        index.nprobe = min(config.nprobe, nlist)
    for start in range(0, num, config.batch_size):
        index.add(_rows_float32(x, start, min(start + config.batch_size, num), normalize))
    return index


def search_index(
    index: Any, queries: Tensor, k: int, config: FaissANN | None = None,
    normalize: bool = False,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` ``(scores, ids)`` of every row of ``queries`` (FAISS order: best first;
    id ``-1`` where the index found fewer than ``k``), ``config.batch_size`` rows at a
    time."""
    faiss = import_faiss()
    config = config or FaissANN()
    if queries.dim() != 2 or queries.size(1) != index.d:
        raise ValueError(f"queries must be [num_queries, {index.d}] to match the index "
                         f"(got {tuple(queries.shape)})")
    _check_positive("k", k)
    params = None
    base = faiss.downcast_index(index)
    if isinstance(base, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=max(config.ef_search, k))
    elif isinstance(base, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(nprobe=min(config.nprobe, base.nlist))
    num = queries.size(0)
    scores = torch.empty(num, k, dtype=torch.float32)
    ids = torch.empty(num, k, dtype=torch.long)
    for start in range(0, num, config.batch_size):
        stop = min(start + config.batch_size, num)
        rows = _rows_float32(queries, start, stop, normalize)
        if params is None:
            dist, found = index.search(rows, k)
        else:
            dist, found = index.search(rows, k, params=params)
        scores[start:stop] = torch.from_numpy(dist)
        ids[start:stop] = torch.from_numpy(found)
    return scores, ids


@torch.no_grad()
def _exact_rows_topk(unit: Tensor, rows: Tensor, k: int, self_loops: bool) -> Tensor:
    """Exact top-``k`` cosine neighbours of the given rows (a fallback for the few rows an
    approximate search left short)."""
    sim = unit[rows] @ unit.t()
    if not self_loops:
        sim[torch.arange(rows.numel()), rows] = -math.inf
    return sim.topk(k, dim=-1).indices


@torch.no_grad()
def approximate_topk_cosine(
    x: Tensor, k: int, block_size: int, self_loops: bool, config: FaissANN
) -> tuple[Tensor, Tensor]:
    r"""Top-``k`` cosine neighbours of every row of ``x`` chosen by a FAISS index, with the
    cosine of each chosen pair recomputed exactly: ``(values, index)``, both
    :math:`(N, k)`, each row sorted by decreasing cosine (the contract of the exact
    blockwise search in :mod:`pyg_multirec.nn.knn`). Rows for which the index returns fewer
    than ``k`` distinct neighbours (possible on tiny or degenerate data) are searched
    exactly."""
    x = x.detach()
    num = x.size(0)
    extra = 0 if self_loops else 1  # the item itself comes back as its own best match
    index = build_index(x, config, normalize=True)
    _, found = search_index(index, x, min(k + extra, num), config, normalize=True)
    del index
    if not self_loops:
        # Drop each row's own id, or its last neighbour where the search missed it.
        is_self = found == torch.arange(num)[:, None]
        drop_col = torch.where(is_self.any(1), is_self.float().argmax(1), torch.full((num,), k))
        keep = torch.ones_like(found, dtype=torch.bool)
        keep[torch.arange(num), drop_col] = False
        found = found[keep].view(num, k)
    found = found.to(x.device)
    bad = (found < 0).any(1)
    inv_norm = x.norm(dim=-1).clamp_min(COSINE_EPS).reciprocal()
    if bool(bad.any()):
        rows = bad.nonzero().view(-1)
        found[rows] = _exact_rows_topk(x * inv_norm[:, None], rows, k, self_loops)
    values = x.new_empty(num, k)
    for start in range(0, num, block_size):  # exact cosine of the selected pairs
        stop = min(start + block_size, num)
        nbr = found[start:stop]
        dots = torch.einsum("bd,bkd->bk", x[start:stop], x[nbr])
        values[start:stop] = dots * inv_norm[start:stop, None] * inv_norm[nbr]
    values, order = values.sort(dim=-1, descending=True, stable=True)
    return values, found.gather(1, order)


# ----------------------------------------------------------------------------------------
# saved indexes
def fingerprint(x: Tensor) -> str:
    """SHA-256 of the float32 bytes and shape of ``x``: identifies the embeddings an index
    was built from."""
    digest = hashlib.sha256(str(tuple(x.shape)).encode())
    for start in range(0, x.size(0), FINGERPRINT_ROWS):
        digest.update(_rows_float32(x, start, start + FINGERPRINT_ROWS, False).tobytes())
    return digest.hexdigest()


def metadata_path(path: Path | str) -> Path:
    path = Path(path)
    return path.with_name(path.name + METADATA_SUFFIX)


def save_index(index: Any, path: Path | str, vectors: Tensor, config: FaissANN,
               extra: dict[str, Any] | None = None) -> Path:
    """Writes ``index`` to ``path`` and, beside it (``path + '.json'``), the metadata that
    :func:`load_index` checks: vector count, dimension, fingerprint of ``vectors``,
    settings and ``extra``."""
    faiss = import_faiss()
    path = Path(path)
    if index.ntotal != vectors.size(0) or index.d != vectors.size(1):
        raise ValueError(f"the index holds {index.ntotal} vectors of dim {index.d} but "
                         f"vectors is {tuple(vectors.shape)}")
    faiss.write_index(index, str(path))
    meta = {"format": METADATA_FORMAT, "num_vectors": int(index.ntotal), "dim": int(index.d),
            "metric": "inner_product", "fingerprint": fingerprint(vectors),
            "config": asdict(config), **(extra or {})}
    metadata_path(path).write_text(json.dumps(meta, indent=1))
    return path


def load_index(path: Path | str, vectors: Tensor | None = None) -> tuple[Any, dict[str, Any]]:
    """Reads an index written by :func:`save_index` and its metadata. Raises a
    :class:`FileNotFoundError` when either file is missing and a :class:`ValueError` when
    the index disagrees with its metadata or, if given, with ``vectors`` (count, dimension
    or fingerprint: an index built for other embeddings)."""
    path = Path(path)
    meta_file = metadata_path(path)
    for needed in (path, meta_file):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} does not exist (write the index with "
                                    f"'export --index')")
    faiss = import_faiss()
    meta = json.loads(meta_file.read_text())
    index = faiss.read_index(str(path))
    if index.ntotal != meta.get("num_vectors") or index.d != meta.get("dim"):
        raise ValueError(f"{path} holds {index.ntotal} vectors of dim {index.d} but its "
                         f"metadata {meta_file} says {meta.get('num_vectors')} of dim "
                         f"{meta.get('dim')}")
    if vectors is not None:
        if tuple(vectors.shape) != (index.ntotal, index.d):
            raise ValueError(
                f"{path} was built for {index.ntotal} item embeddings of dim {index.d}, but "
                f"the embeddings to serve are {tuple(vectors.shape)}: rebuild the index"
            )
        if fingerprint(vectors) != meta["fingerprint"]:
            raise ValueError(f"{path} was built for other item embeddings (fingerprint "
                             f"mismatch): rebuild the index for these embeddings")
    return index, meta
