"""Helpers of the dataset tests: tiny hand-made datasets in memory and in MMRec files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

INTER_HEADER = ("userID", "itemID", "rating", "timestamp", "x_label")


def write_mmrec(
    folder: Path,
    name: str,
    users: list[int],
    items: list[int],
    labels: list[int],
    features: dict[str, np.ndarray],
    header: tuple[str, ...] = INTER_HEADER,
) -> Path:
    """Writes ``folder/name/name.inter`` (Amazon MMRec columns) and one ``*_feat.npy`` per
    modality; returns ``folder/name``."""
    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)]
    for row, (u, i, x) in enumerate(zip(users, items, labels)):
        values = {"userID": u, "itemID": i, "rating": 5.0, "timestamp": 1000 + row, "x_label": x}
        lines.append("\t".join(str(values.get(c, 0)) for c in header))
    (target / f"{name}.inter").write_text("\n".join(lines) + "\n")
    for modality, array in features.items():
        np.save(target / f"{modality}_feat.npy", array)
    return target


def tiny_interactions() -> tuple[list[int], list[int], list[int]]:
    """3 users, 5 items (item 4 without any interaction); every user has train, valid, test."""
    users = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    items = [0, 1, 2, 3, 1, 2, 3, 0, 3, 2]
    labels = [0, 0, 1, 2, 0, 1, 2, 0, 1, 2]
    return users, items, labels


def make_data(num_users: int = 3, num_items: int = 4, dims: dict[str, int] | None = None,
              seed: int = 0) -> HeteroData:
    """A small valid data object: user u trains on items u and u+1, validates on u+2 and
    tests on u+3 (mod num_items)."""
    gen = torch.Generator().manual_seed(seed)
    dims = {"image": 3, "text": 2} if dims is None else dims
    data = HeteroData()
    data["user"].num_nodes = num_users
    data["item"].num_nodes = num_items
    for m, d in dims.items():
        data["item"][f"{m}_feat"] = torch.randn(num_items, d, generator=gen)
    data.modalities = sorted(dims)
    u = torch.arange(num_users)
    data["user", "train", "item"].edge_index = torch.stack(
        [torch.cat([u, u]), torch.cat([u, u + 1]) % num_items]
    )
    data["user", "valid", "item"].edge_index = torch.stack([u, (u + 2) % num_items])
    data["user", "test", "item"].edge_index = torch.stack([u, (u + 3) % num_items])
    return data


def reference_split(rows: list[tuple[str, str, int]]) -> dict[tuple[str, str], int]:
    """(user, item) -> x_label of ``rows`` of (user, item, time), written independently from
    the rule in the ml100k README: duplicates keep the earliest time; per user, sorted by
    time (ties by item id), n_valid = n_test = max(1, round(0.1 n)) for n >= 3."""
    earliest: dict[tuple[str, str], int] = {}
    for user, item, t in rows:
        if (user, item) not in earliest or t < earliest[(user, item)]:
            earliest[(user, item)] = t
    by_user: dict[str, list[tuple[int, str]]] = {}
    for (user, item), t in earliest.items():
        by_user.setdefault(user, []).append((t, item))
    labels = {}
    for user, events in by_user.items():
        events.sort()  # by time, ties by item id (string ids sort like the new ids)
        n = len(events)
        if n < 3:
            n_valid = n_test = 0
        else:
            n_test = max(1, round(0.1 * n))
            n_valid = max(1, round(0.1 * n))
        n_train = n - n_valid - n_test
        for position, (_, item) in enumerate(events):
            in_valid = position < n_train + n_valid
            labels[(user, item)] = 0 if position < n_train else 1 if in_valid else 2
    return labels


def read_mapping(path: Path) -> dict[str, int]:
    """``{original id: new id}`` of a written mapping file."""
    with path.open() as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)
        return {orig: int(new) for orig, new in reader}


def read_inter_file(path: Path) -> tuple[list[str], np.ndarray]:
    """Header and integer table of a written ``.inter`` file."""
    with path.open() as f:
        header = f.readline().rstrip("\n").split("\t")
    return header, np.loadtxt(path, skiprows=1, dtype=np.int64, ndmin=2)
