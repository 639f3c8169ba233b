"""Writes pyg_multirec's generated (``synthetic``) data set into the official MICRO's data
layout, exactly as ``python examples/micro.py train [--cold-start] --seed S`` builds it, so
that the official code trains on the same users, items, features and (cold-start) split.

    python benchmarks/official/export_synthetic.py --micro /path/to/official/MICRO --seed 0
    python benchmarks/official/export_synthetic.py --micro ... --seed 0 --check   # verify only

The data comes from the examples' own harness (:func:`pyg_multirec.experiment.load_data` with
the ``train`` sub-command's defaults: ``SyntheticMultiModal`` with 1,000 users, 500 items,
20,000 interactions and data seed ``S``; with ``--cold-start``,
:func:`pyg_multirec.datasets.cold_start_split` with the same seed ``S``). Written to
``MICRO/data/synthetic_sS/`` (the official ``--dataset synthetic_sS``):

* ``image_feat.npy`` and ``text_feat.npy``: the ``image`` (64-d) and ``text`` (32-d)
  modalities, float32, one row per item (MICRO reads exactly these two names);
* ``5-core/{train,val,test}.json``: the warm 8:1:1 split (official ``--core 5``);
* ``0-core/{train,val,test}.json``: the item cold-start split (official ``--core 0``), with
  ``cold_start_info.json`` (the split's counts and its cold valid / test items);
* ``fingerprint.json``: per split, the number of pairs and a SHA-256 of the sorted pairs,
  plus the users, items and feature hashes (:func:`fingerprint`), what ``--check`` compares
  with a fresh build of the same data.

The official loader (``codes/utility/load_data.py``) sizes its tables from the largest ids
it sees (users: of the training file; items: of all three files), so :func:`check_layout`
also verifies that these give back our number of items and cover every user with a
validation or test pair. Nothing here is official code; no data file enters the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from prepare_data import (  # its folder: run it as a script
    MICRO_COLD_DIR,
    MICRO_SPLIT_FILES,
    MICRO_WARM_DIR,
    write_micro_split,
)
from torch_geometric.data import HeteroData

from pyg_multirec.datasets.validation import split_edge_type
from pyg_multirec.experiment import build_parser, load_data

#: The official MICRO's feature file of each of our synthetic modalities (same names).
MODALITY_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}
FINGERPRINT_FILE = "fingerprint.json"
COLD_INFO_FILE = "cold_start_info.json"
#: The adjacency caches the official loader writes beside the JSON splits (stale after a
#: new export, so they are removed).
MICRO_ADJ_CACHES = ("s_adj_mat.npz", "s_norm_adj_mat.npz", "s_mean_adj_mat.npz")


def dataset_name(seed: int) -> str:
    """The official ``--dataset`` name of the export of data seed ``seed``."""
    return f"synthetic_s{seed}"


def harness_data(seed: int, cold_start: bool) -> HeteroData:
    """The data of ``python examples/micro.py train [--cold-start] --seed SEED``, built by the
    examples' harness with its own defaults (so the export follows them if they change)."""
    argv = ["train", "--seed", str(seed)] + (["--cold-start"] if cold_start else [])
    args = build_parser("micro", None, None).parse_args(argv)
    return load_data(args)


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def pair_fingerprint(pairs: np.ndarray) -> dict[str, int | str]:
    """``{"pairs": n, "sha256": ...}`` of a ``[2, n]`` array of (user, item) pairs, order-free
    (sorted by user, then item, as int64)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(2, -1)
    order = np.lexsort((pairs[1], pairs[0]))
    return {"pairs": int(pairs.shape[1]), "sha256": _sha256(pairs[:, order])}


def fingerprint(data: HeteroData) -> dict:
    """Counts and hashes of ``data``: users, items, each split's pairs, each modality's
    features (float32) and, for a cold-start split, the sorted cold valid and test items."""
    out: dict = {
        "num_users": int(data["user"].num_nodes),
        "num_items": int(data["item"].num_nodes),
        "splits": {
            split: pair_fingerprint(data[split_edge_type(split)].edge_index.numpy())
            for split in MICRO_SPLIT_FILES
        },
        "features": {
            m: _sha256(data["item"][f"{m}_feat"].numpy().astype(np.float32))
            for m in MODALITY_FILES
        },
    }
    if "cold_mask" in data["item"]:
        for split in ("valid", "test"):
            items = np.unique(data[split_edge_type(split)].edge_index[1].numpy())
            out[f"cold_{split}_items"] = {"count": len(items), "sha256": _sha256(items)}
    return out


def read_micro_pairs(folder: Path) -> dict[str, np.ndarray]:
    """The ``[2, n]`` (user, item) pairs of each split of a MICRO JSON folder."""
    out = {}
    for split, file_name in MICRO_SPLIT_FILES.items():
        table = json.loads((folder / file_name).read_text())
        pairs = [(int(u), int(i)) for u, items in table.items() for i in items]
        out[split] = np.asarray(pairs, dtype=np.int64).reshape(-1, 2).T
    return out


def exported_fingerprint(folder: Path, split_dir: str) -> dict:
    """:func:`fingerprint` recomputed from the written files (JSON splits and ``.npy``)."""
    pairs = read_micro_pairs(folder / split_dir)
    features = {m: np.load(folder / f) for m, f in MODALITY_FILES.items()}
    out: dict = {
        "num_users": len(json.loads((folder / split_dir / MICRO_SPLIT_FILES["train"]).read_text())),
        "num_items": int(features["image"].shape[0]),
        "splits": {split: pair_fingerprint(p) for split, p in pairs.items()},
        "features": {m: _sha256(x.astype(np.float32)) for m, x in features.items()},
    }
    if split_dir == MICRO_COLD_DIR:
        for split in ("valid", "test"):
            items = np.unique(pairs[split][1])
            out[f"cold_{split}_items"] = {"count": len(items), "sha256": _sha256(items)}
    return out


def check_layout(folder: Path, split_dir: str) -> None:
    """Raises ``ValueError`` if the official loader would size its tables differently from
    the features (largest item id + 1 over the three files) or miss a user with held-out
    pairs (largest user id with training pairs + 1)."""
    pairs = read_micro_pairs(folder / split_dir)
    num_items = np.load(folder / MODALITY_FILES["image"]).shape[0]
    for f in MODALITY_FILES.values():
        if np.load(folder / f).shape[0] != num_items:
            raise ValueError(f"{folder / f}: not {num_items} rows")
    seen_items = max(int(p[1].max()) for p in pairs.values() if p.size) + 1
    if seen_items != num_items:
        raise ValueError(
            f"{folder / split_dir}: the official loader would see {seen_items} items, the "
            f"features have {num_items}"
        )
    users_with_train = set(pairs["train"][0].tolist())
    for split in ("valid", "test"):
        orphans = set(pairs[split][0].tolist()) - users_with_train
        if orphans:
            raise ValueError(f"{split}: users without training pairs: {sorted(orphans)[:5]}")


def export(micro: Path, seed: int) -> Path:
    """Writes the warm and the cold-start split of data seed ``seed`` (see the module
    docstring) and returns the data folder."""
    folder = micro / "data" / dataset_name(seed)
    folder.mkdir(parents=True, exist_ok=True)
    warm, cold = harness_data(seed, cold_start=False), harness_data(seed, cold_start=True)
    for m, file_name in MODALITY_FILES.items():
        np.save(folder / file_name, warm["item"][f"{m}_feat"].numpy().astype(np.float32))
    for split_dir, data in ((MICRO_WARM_DIR, warm), (MICRO_COLD_DIR, cold)):
        write_micro_split(data, folder / split_dir)
        for cache in MICRO_ADJ_CACHES:
            (folder / split_dir / cache).unlink(missing_ok=True)
    info = dict(cold.cold_start_info)
    for split in ("valid", "test"):
        items = torch.unique(cold[split_edge_type(split)].edge_index[1])
        info[f"cold_{split}_items"] = items.tolist()
    (folder / MICRO_COLD_DIR / COLD_INFO_FILE).write_text(json.dumps(info, indent=1))
    prints = {MICRO_WARM_DIR: fingerprint(warm), MICRO_COLD_DIR: fingerprint(cold)}
    (folder / FINGERPRINT_FILE).write_text(json.dumps(prints, indent=1))
    return folder


def check(micro: Path, seed: int) -> dict:
    """Compares the written files with a fresh build of the harness's data of ``seed``;
    returns the fingerprints, raises ``ValueError`` on any difference."""
    folder = micro / "data" / dataset_name(seed)
    if not folder.is_dir():
        raise ValueError(f"{folder} does not exist: export it first")
    out = {}
    for split_dir, cold_start in ((MICRO_WARM_DIR, False), (MICRO_COLD_DIR, True)):
        expected = fingerprint(harness_data(seed, cold_start))
        written = exported_fingerprint(folder, split_dir)
        if written != expected:
            raise ValueError(
                f"{folder / split_dir} differs from the harness's data of seed {seed}:\n"
                f"written  {json.dumps(written)}\nexpected {json.dumps(expected)}"
            )
        check_layout(folder, split_dir)
        out[split_dir] = expected
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--micro", required=True, help="the official MICRO checkout")
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="data seed(s)")
    parser.add_argument("--check", action="store_true", help="only verify existing exports")
    args = parser.parse_args()
    micro = Path(args.micro)
    if not (micro / "codes").is_dir():
        raise SystemExit(f"{micro}/codes not found: --micro must be the MICRO checkout")
    for seed in args.seed:
        if not args.check:
            print(f"wrote {export(micro, seed)}")
        prints = check(micro, seed)
        cold = prints[MICRO_COLD_DIR]
        splits = {s: v["pairs"] for s, v in cold["splits"].items()}
        print(
            f"seed {seed}: OK ({cold['num_users']} users, {cold['num_items']} items; cold split "
            f"{splits}, cold items valid {cold['cold_valid_items']['count']} test "
            f"{cold['cold_test_items']['count']}; train sha256 "
            f"{cold['splits']['train']['sha256'][:12]})"
        )


if __name__ == "__main__":
    main()
