"""Export of trained embeddings and top-K serving from a FAISS index.

:func:`export_embeddings` writes what a serving system needs from a trained
:class:`~pyg_multirec.models.Recommender`: the final user and item embeddings (those
:meth:`~pyg_multirec.models.Recommender.score` ranks by inner product) with their original
ids, as NumPy files and, when :mod:`pyarrow` is installed, Parquet tables, plus optionally a
FAISS inner-product index over the items. :func:`recommend_from_index` answers a user's
top-K from such an export. Both back the ``export`` and ``recommend --index`` sub-commands
of the example scripts (:mod:`pyg_multirec.experiment`).

Files in the output folder::

    export.json              manifest: model, checkpoint (path, SHA-256), counts, dim, files
    user_embeddings.npy      float32 [num_users, dim], row u = internal user id u
    user_ids.npy             original id of each row (int64, or str)
    item_embeddings.npy      float32 [num_items, dim]
    item_ids.npy
    users.parquet            columns id, embedding (list<float32>)   (with pyarrow)
    items.parquet
    items.faiss              FAISS inner-product index of the items  (with --index)
    items.faiss.json         its metadata: count, dim, fingerprint of the item embeddings
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_multirec.ann import INDEX_KINDS, FaissANN, build_index, load_index, save_index
from pyg_multirec.ann import search_index as _search_index
from pyg_multirec.models import Recommender

MANIFEST = "export.json"
INDEX_FILE = "items.faiss"
EMBEDDINGS_FILE = "{}_embeddings.npy"
IDS_FILE = "{}_ids.npy"
PARQUET_FILE = "{}s.parquet"
# MMRec folders map original ids to the internal 0..n-1 ids in these tab-separated files
# (header: original column, then the internal one).
ID_MAPPING_FILES = {"user": ("u_id_mapping.csv", "userID"), "item": ("i_id_mapping.csv", "itemID")}
PYARROW_HINT = 'pip install pyarrow (or pip install "pyg_multirec[export]")'
HASH_CHUNK = 1 << 20
# HNSW candidate list when serving: inner-product search over unnormalised embeddings needs a
# longer one than the cosine kNN graph; 256 gave recall@10 0.96 (1M items) and 0.99 (23k)
# against exact ranking in benchmarks/ann.py --workload serve.
SERVING_EF_SEARCH = 256


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_id_mapping(folder: Path | str, node_type: str, count: int) -> Optional[np.ndarray]:
    """Original ids of the ``count`` internal ids of ``node_type`` (``'user'`` or
    ``'item'``) from an MMRec mapping file in ``folder``, or ``None`` when there is none.
    Integer-like ids come back as int64, others as str. A file that does not cover every
    internal id ``0..count-1`` exactly once raises a :class:`ValueError`."""
    name, internal_column = ID_MAPPING_FILES[node_type]
    path = Path(folder) / name
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = [h.strip() for h in lines[0].split("\t")] if lines else []
    if internal_column not in header or len(header) < 2:
        raise ValueError(f"{path}: the header must name {internal_column!r} and the original "
                         f"id column, tab-separated (got {header})")
    col = header.index(internal_column)
    other = 1 - col if col < 2 else 0
    original = np.empty(count, dtype=object)
    seen = np.zeros(count, dtype=bool)
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            internal = int(parts[col])
        except (ValueError, IndexError) as err:
            raise ValueError(f"{path}:{number}: no integer {internal_column}") from err
        if not 0 <= internal < count or seen[internal]:
            raise ValueError(f"{path}:{number}: {internal_column} {internal} is out of range "
                             f"0..{count - 1} or repeated")
        seen[internal] = True
        original[internal] = parts[other].strip()
    if not seen.all():
        raise ValueError(f"{path} maps {int(seen.sum())} of the {count} {node_type} ids")
    try:
        return original.astype(np.int64)
    except ValueError:
        return original.astype(str)


def _write_parquet(path: Path, ids: np.ndarray, emb: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(emb.reshape(-1), type=pa.float32())
    table = pa.table({"id": pa.array(ids),
                      "embedding": pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])})
    pq.write_table(table, path)


def _pyarrow_available() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def export_embeddings(
    model: Recommender,
    out: Path | str,
    user_ids: Optional[np.ndarray] = None,
    item_ids: Optional[np.ndarray] = None,
    parquet: Optional[bool] = None,
    index: Optional[FaissANN] = None,
    extra: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Writes the user and item embeddings of ``model`` (``model.embed()`` in eval mode)
    to the folder ``out`` with their ids (``None``: the internal ids ``0..n-1``); Parquet
    tables too when ``parquet`` (``None``: when :mod:`pyarrow` is installed), and a FAISS
    inner-product index of the items when ``index`` is given. Returns the manifest (also
    written to ``out/export.json``, with ``extra`` merged in)."""
    if parquet and not _pyarrow_available():
        raise ImportError(f"Parquet export needs pyarrow, which is not installed: "
                          f"{PYARROW_HINT}")
    write_parquet = _pyarrow_available() if parquet is None else parquet
    model.eval()
    with torch.no_grad():
        user_emb, item_emb = (e.detach().to("cpu", torch.float32) for e in model.embed())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for node_type, emb, ids in (("user", user_emb, user_ids), ("item", item_emb, item_ids)):
        ids = np.arange(emb.size(0)) if ids is None else np.asarray(ids)
        if ids.shape != (emb.size(0),):
            raise ValueError(f"{node_type}_ids must hold one id per embedding row "
                             f"({emb.size(0)}), got shape {ids.shape}")
        array = np.ascontiguousarray(emb.numpy())
        np.save(out / EMBEDDINGS_FILE.format(node_type), array)
        np.save(out / IDS_FILE.format(node_type), ids)
        files += [EMBEDDINGS_FILE.format(node_type), IDS_FILE.format(node_type)]
        if write_parquet:
            _write_parquet(out / PARQUET_FILE.format(node_type), ids, array)
            files.append(PARQUET_FILE.format(node_type))
    manifest: dict[str, Any] = {
        **(extra or {}),
        "num_users": user_emb.size(0), "num_items": item_emb.size(0),
        "dim": item_emb.size(1), "score": "inner_product", "files": files, "index": None,
    }
    if index is not None:
        faiss_index = build_index(item_emb, index)
        save_index(faiss_index, out / INDEX_FILE, item_emb, index)
        manifest["index"] = INDEX_FILE
        files += [INDEX_FILE, INDEX_FILE + ".json"]
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def load_export(folder: Path | str) -> tuple[dict[str, Any], Tensor, Tensor]:
    """The manifest and the user and item embeddings of an export folder."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} does not exist: not a folder written by "
                                f"'export'")
    manifest = json.loads(manifest_path.read_text())
    user_emb, item_emb = (torch.from_numpy(np.load(folder / EMBEDDINGS_FILE.format(t)))
                          for t in ("user", "item"))
    return manifest, user_emb, item_emb


def recommend_from_index(
    folder: Path | str,
    data: HeteroData,
    user: int,
    k: int = 10,
    checkpoint: Optional[Path | str] = None,
) -> list[int]:
    """Top-``k`` internal item ids for ``user`` from the FAISS index of an export folder,
    excluding the items the user interacted with in ``data`` (as
    :func:`pyg_multirec.experiment.recommend` does with exact scores). With ``checkpoint``,
    the export must come from that checkpoint file. Raises a :class:`ValueError` when the
    export, its index and ``data`` disagree (counts, dimension, fingerprint, checkpoint)."""
    folder = Path(folder)
    manifest, user_emb, item_emb = load_export(folder)
    if manifest.get("index") is None:
        raise ValueError(f"{folder} has no FAISS index: run 'export --index'")
    if checkpoint is not None and manifest.get("checkpoint_sha256") != sha256_file(
        Path(checkpoint)
    ):
        raise ValueError(f"{folder} was exported from another checkpoint than {checkpoint}: "
                         f"export it again")
    num_users, num_items = data["user"].num_nodes, data["item"].num_nodes
    if (user_emb.size(0), item_emb.size(0)) != (num_users, num_items):
        raise ValueError(f"{folder} holds {user_emb.size(0)} users and {item_emb.size(0)} "
                         f"items but the data has {num_users} and {num_items}")
    index, meta = load_index(folder / manifest["index"], vectors=item_emb)
    if not 0 <= user < num_users:
        raise ValueError(f"user {user} is out of range: the dataset has users 0..{num_users - 1}")
    seen = torch.cat([data["user", s, "item"].edge_index for s in ("train", "valid", "test")],
                     dim=1)
    seen_items = set(seen[1, seen[0] == user].tolist())
    if k < 1 or k > num_items - len(seen_items):
        raise ValueError(
            f"k must be between 1 and {num_items - len(seen_items)} (unseen items), got {k}"
        )
    config = FaissANN(**meta["config"])
    ask = min(num_items, k + len(seen_items))
    while True:
        _, found = _search_index(index, user_emb[user : user + 1], ask, config)
        items = [i for i in found[0].tolist() if i >= 0 and i not in seen_items]
        if len(items) >= k or ask == num_items:
            return items[:k]
        ask = min(num_items, 2 * ask)


# ----------------------------------------------------------------------------------------
# the command line of the example scripts
def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the ``export`` sub-command to an example script's parser."""
    parser = subparsers.add_parser(
        "export", help="write user/item embeddings with their original ids (and an index)"
    )
    parser.add_argument("--checkpoint", required=True, help="a best.pt written by train")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--data-root", default=None,
                        help="override the data root it was trained on")
    parser.add_argument("--parquet", action=argparse.BooleanOptionalAction, default=None,
                        help="also write Parquet tables (default: when pyarrow is installed)")
    parser.add_argument("--index", choices=INDEX_KINDS, default=None,
                        help="also build a FAISS inner-product index of the items "
                        "(needs faiss-cpu)")
    return parser


def export_command(name: str, model: Recommender, data: HeteroData,
                   config: argparse.Namespace, args: argparse.Namespace) -> dict[str, Any]:
    """``export``: embeddings of a restored checkpoint (original ids from the dataset's
    MMRec mapping files when present)."""
    ids: dict[str, Optional[np.ndarray]] = {"user": None, "item": None}
    id_source = "internal"
    if config.dataset != "synthetic":
        folder = Path(config.data_root) / config.dataset
        for node_type in ids:
            ids[node_type] = read_id_mapping(folder, node_type, data[node_type].num_nodes)
        if ids["user"] is not None or ids["item"] is not None:
            id_source = "MMRec id mapping files (internal ids where missing)"
    checkpoint = Path(args.checkpoint)
    manifest = export_embeddings(
        model, args.out, ids["user"], ids["item"], parquet=args.parquet,
        index=None if args.index is None else FaissANN(kind=args.index,
                                                       ef_search=SERVING_EF_SEARCH),
        extra={"model": name, "checkpoint": str(checkpoint.resolve()),
               "checkpoint_sha256": sha256_file(checkpoint), "dataset": config.dataset,
               "ids": id_source},
    )
    print(f"wrote {', '.join(manifest['files'])} to {args.out}")
    return manifest


def add_index_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", default=None,
                        help="answer from the FAISS index of this export folder "
                        "('export --index hnsw')")


def recommend_command(args: argparse.Namespace, data: HeteroData) -> Sequence[int]:
    """``recommend --index FOLDER``."""
    return recommend_from_index(args.index, data, args.user, args.k, args.checkpoint)
