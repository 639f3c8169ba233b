"""Writes one MMRec-format data set into the data folders of the official SEA, MICRO and MMRec
code, so that they train on exactly the files (and, for MICRO's cold start, exactly the split)
that pyg_multirec uses.

    python benchmarks/official/prepare_data.py --official /path/to/official \
        --data-root ../shared/data --dataset ml100k

``--official`` holds the three checkouts ``SEA/``, ``MICRO/`` and ``MMRec/`` (any of them may
be missing; it is then skipped). Written:

* ``data/NAME/``: the ``.inter`` file and every ``*_feat.npy`` of the data set, unchanged, so
  that pyg_multirec's own examples can run from the same folder (``--data-root OFFICIAL/data``)
  on a machine without the shared data.

* ``SEA/data/NAME/`` and ``MMRec/data/NAME/``: ``NAME.inter`` (copied), ``text_feat.npy``,
  ``image_feat.npy`` (a copy of ``<--image-modality>_feat.npy``: MMRec's models only know the
  names *image* and *text*), and for SEA ``user_graph_dict.npy`` (see
  :func:`user_graph_dict`); plus ``src/configs/dataset/NAME.yaml`` in both.
* ``MICRO/data/NAME/``: ``image_feat.npy``, ``text_feat.npy`` and the JSON splits that
  MICRO's ``codes/utility/load_data.py`` reads, ``{"user id": [item ids]}``:
  ``5-core/{train,val,test}.json`` (the warm split, ``x_label`` 0/1/2 of the ``.inter`` file)
  and ``0-core/{train,val,test}.json`` (the item cold-start split of
  :func:`pyg_multirec.datasets.cold_start_split` with ``--cold-seed``, i.e. the same cold
  items as ``python examples/micro.py train --cold-start --seed S`` with S = ``--cold-seed``,
  default 0). MICRO chooses the folder with ``--core 5`` (warm) or ``--core 0`` (cold).
  ``--micro-name`` writes them to ``MICRO/data/<micro-name>/`` instead (the official code
  then runs with ``--dataset <micro-name>``), e.g. one folder per cold seed.

Nothing here is official code; the data files are never written into this repository.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from pyg_multirec.datasets import cold_start_split, load_dataset
from pyg_multirec.datasets.validation import split_edge_type

# SEA's user-user co-interaction graph keeps at most this many neighbours per user (the value
# of MMRec's preprocessing for DualGNN, whose file format SEA reads).
USER_GRAPH_MAX_NEIGHBOURS = 200
# MICRO's folder names: "--core 5" reads 5-core/ (warm), "--core 0" reads 0-core/ (cold start).
MICRO_WARM_DIR = "5-core"
MICRO_COLD_DIR = "0-core"
# MICRO's JSON file of each of our split names.
MICRO_SPLIT_FILES = {"train": "train.json", "valid": "val.json", "test": "test.json"}

DATASET_YAML = """\
# Written by pyg_multirec's benchmarks/official/prepare_data.py (MMRec dataset config).
USER_ID_FIELD: userID
ITEM_ID_FIELD: itemID
TIME_FIELD: timestamp
filter_out_cod_start_users: True
inter_file_name: '{name}.inter'
vision_feature_file: 'image_feat.npy'
text_feature_file: 'text_feat.npy'
user_graph_dict_file: 'user_graph_dict.npy'
field_separator: "\\t"
"""


def user_graph_dict(train: torch.Tensor, num_users: int) -> dict[int, list[list]]:
    """SEA's ``user_graph_dict.npy`` (the DualGNN user-user graph of MMRec's preprocessing):
    for each user ``u``, ``[neighbours, counts]``: the other users sorted by the number of
    training items they share with ``u`` (descending), at most
    :data:`USER_GRAPH_MAX_NEIGHBOURS`, only those sharing at least one item. SEA samples from it
    in ``pre_epoch_processing`` but its forward pass never uses the result."""
    num_items = int(train[1].max()) + 1
    r = torch.zeros(num_users, num_items)
    r[train[0], train[1]] = 1.0
    shared = r @ r.t()
    shared.fill_diagonal_(0)
    out = {}
    for u in range(num_users):
        k = min(int((shared[u] > 0).sum()), USER_GRAPH_MAX_NEIGHBOURS)
        values, indices = torch.topk(shared[u], k)
        out[u] = [indices.tolist(), values.tolist()]
    return out


def micro_json(data: HeteroData, split: str) -> dict[str, list[int]]:
    """``{"user": [items]}`` for every user (empty lists included), as MICRO's scripts write."""
    edge_index = data[split_edge_type(split)].edge_index
    out: dict[str, list[int]] = {str(u): [] for u in range(data["user"].num_nodes)}
    for u, i in edge_index.t().tolist():
        out[str(u)].append(i)
    return out


def write_micro_split(data: HeteroData, folder: Path) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, file_name in MICRO_SPLIT_FILES.items():
        table = micro_json(data, split)
        (folder / file_name).write_text(json.dumps(table))
        counts[split] = sum(len(v) for v in table.values())
    return counts


def prepare_mmrec_like(repo: Path, name: str, source: Path, image: str, with_user_graph: bool,
                       data: HeteroData) -> None:
    folder = repo / "data" / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / f"{name}.inter", folder / f"{name}.inter")
    shutil.copyfile(source / "text_feat.npy", folder / "text_feat.npy")
    shutil.copyfile(source / f"{image}_feat.npy", folder / "image_feat.npy")
    if with_user_graph:
        train = data[split_edge_type("train")].edge_index
        graph = user_graph_dict(train, data["user"].num_nodes)
        np.save(folder / "user_graph_dict.npy", graph, allow_pickle=True)
    config = repo / "src" / "configs" / "dataset" / f"{name}.yaml"
    config.write_text(DATASET_YAML.format(name=name))
    print(f"{repo.name}: wrote {folder} and {config}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", required=True, help="folder holding SEA/, MICRO/, MMRec/")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument(
        "--image-modality", default="genre", help="modality written as image_feat.npy"
    )
    parser.add_argument("--cold-seed", type=int, default=0, help="seed of cold_start_split")
    parser.add_argument(
        "--micro-name",
        help="folder name under MICRO/data (default: --dataset); e.g. ml100k_c1 with "
        "--cold-seed 1 for the cold split of `examples/micro.py --cold-start --seed 1`",
    )
    args = parser.parse_args()

    official = Path(args.official)
    source = Path(args.data_root) / args.dataset
    for needed in (f"{args.dataset}.inter", "text_feat.npy", f"{args.image_modality}_feat.npy"):
        if not (source / needed).is_file():
            raise SystemExit(f"missing data file {source / needed}")
    data = load_dataset(args.dataset, args.data_root)

    ours = official / "data" / args.dataset
    ours.mkdir(parents=True, exist_ok=True)
    for path in [source / f"{args.dataset}.inter", *sorted(source.glob("*_feat.npy"))]:
        shutil.copyfile(path, ours / path.name)
    print(f"pyg_multirec: wrote {ours}")

    for repo_name, with_user_graph in (("SEA", True), ("MMRec", False)):
        if (official / repo_name / "src").is_dir():
            prepare_mmrec_like(official / repo_name, args.dataset, source, args.image_modality,
                               with_user_graph, data)
        else:
            print(f"{repo_name}: not found under {official}, skipped")

    micro = official / "MICRO"
    if not (micro / "codes").is_dir():
        print(f"MICRO: not found under {official}, skipped")
        return
    folder = micro / "data" / (args.micro_name or args.dataset)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "text_feat.npy", folder / "text_feat.npy")
    shutil.copyfile(source / f"{args.image_modality}_feat.npy", folder / "image_feat.npy")
    warm = write_micro_split(data, folder / MICRO_WARM_DIR)
    cold_data = cold_start_split(data, seed=args.cold_seed)
    cold = write_micro_split(cold_data, folder / MICRO_COLD_DIR)
    info = dict(cold_data.cold_start_info)
    cold_items = torch.nonzero(cold_data["item"].cold_mask).flatten().tolist()
    info["cold_items"] = cold_items
    (folder / MICRO_COLD_DIR / "cold_start_info.json").write_text(json.dumps(info, indent=1))
    print(f"MICRO: warm split {warm} in {folder / MICRO_WARM_DIR}")
    print(f"MICRO: cold split (seed {args.cold_seed}, {len(cold_items)} cold items) {cold} "
          f"in {folder / MICRO_COLD_DIR}")


if __name__ == "__main__":
    main()
