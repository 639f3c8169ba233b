"""Runs the official ``src/main.py`` of MMRec (github.com/enoche/MMRec) or of an MMRec fork such
as SEA (github.com/bruno686/SEA) unchanged, with configuration overrides and without the
packages that the run never uses.

    python benchmarks/official/run_mmrec.py --src OFFICIAL/MMRec/src \
        --set epochs=1000 --set "reg_weight=[1.0]" -- --model BPR --dataset ml100k
    python benchmarks/official/run_mmrec.py --src OFFICIAL/SEA/src -- --model SEA --dataset ml100k

Arguments after ``--`` go to the official ``main.py``. Each ``--set KEY=VALUE`` (VALUE read as
a Python literal, else as YAML) is merged into the ``config_dict`` that ``main.py`` hands to
``quick_start``; in MMRec that dictionary overrides the YAML files. A key listed in a model's
``hyper_parameters`` (e.g. ``reg_weight``, ``n_layers``) must be given as a list, e.g.
``"reg_weight=[1.0]"``: MMRec runs the product of these lists, so one-element lists run one
configuration.

Environment shims (they change no computation):

* ``wandb`` (imported and called by SEA's fork, online mode) is replaced by a no-op module;
* ``lmdb`` and, when torchvision is missing, MMRec's ``utils.data_utils`` (both only serve the
  end-to-end image pipeline, ``end2end: False`` here) are replaced by empty stand-ins;
* ``numpy.float`` (removed in numpy 1.24, used by MMRec's ``utils/metrics.py``) is set to
  Python's ``float``, which is what it was an alias of;
* ``scipy.sparse.dok_matrix._update`` (a private method removed in scipy 1.12, called by
  MMRec's ``models/lightgcn.py``) is set to the public ``update``, which does the same;
* ``torch.sparse.FloatTensor(indices, values, size)`` (a legacy constructor that SEA calls on
  tensors already on the model's device) falls back to ``torch.sparse_coo_tensor(indices,
  values, size)``, the same tensor, if a PyTorch version refuses non-CPU inputs;
* a model file whose name is not lower case (SEA's ``models/SEA.py``) is also registered under
  its lower-case module name (``models.sea``), which is what MMRec's ``get_model`` imports: on
  a case-insensitive file system (where the fork was presumably run) that import finds the file.

The per-epoch log is what MMRec's logger writes to standard error (and to ``src/log/``).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import runpy
import sys
import types
from pathlib import Path
from typing import Any

import yaml


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


def install_shims(src: Path) -> None:
    wandb = types.ModuleType("wandb")
    wandb.init = wandb.log = wandb.login = wandb.finish = _no_op  # type: ignore[attr-defined]
    sys.modules["wandb"] = wandb
    if importlib.util.find_spec("lmdb") is None:
        sys.modules["lmdb"] = types.ModuleType("lmdb")
    has_data_utils = (src / "utils" / "data_utils.py").exists()
    if importlib.util.find_spec("torchvision") is None and has_data_utils:
        data_utils = types.ModuleType("utils.data_utils")
        for name in ("ImageResize", "ImagePad", "image_to_tensor",
                     "load_decompress_img_from_lmdb_value"):
            setattr(data_utils, name, None)
        sys.modules["utils.data_utils"] = data_utils
    import numpy as np

    if "float" not in np.__dict__:
        np.float = float  # type: ignore[attr-defined]
    import scipy.sparse as sp

    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = sp.dok_matrix.update  # type: ignore[attr-defined]
    import torch

    legacy_sparse = torch.sparse.FloatTensor

    def sparse_float_tensor(*args: Any, **kwargs: Any) -> Any:
        try:
            return legacy_sparse(*args, **kwargs)
        except (RuntimeError, TypeError):
            if len(args) == 3 and not kwargs and all(torch.is_tensor(a) for a in args[:2]):
                return torch.sparse_coo_tensor(args[0], args[1], args[2])
            raise

    torch.sparse.FloatTensor = sparse_float_tensor
    for path in sorted((src / "models").glob("*.py")):
        if path.stem != path.stem.lower():
            module = importlib.import_module(f"models.{path.stem}")
            sys.modules[f"models.{path.stem.lower()}"] = module


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects KEY=VALUE (got {item!r})")
        try:  # Python literals first: YAML reads "1e-3" (no dot) as a string
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = yaml.safe_load(value)
    return out


def main() -> None:
    argv = sys.argv[1:]
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="the official checkout's src/ folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    src = Path(args.src).resolve()
    main_py = src / "main.py"
    if not main_py.is_file():
        raise SystemExit(f"no main.py in {src}")
    overrides = parse_overrides(args.set)

    os.chdir(src)  # MMRec reads configs/ and ../data/ relative to the working directory
    sys.path.insert(0, str(src))
    install_shims(src)
    import utils.quick_start as quick_start_module

    official_quick_start = quick_start_module.quick_start

    def quick_start(*qargs: Any, config_dict: dict[str, Any], **qkwargs: Any) -> Any:
        config_dict.update(overrides)
        print(f"run_mmrec: config overrides {overrides}", flush=True)
        return official_quick_start(*qargs, config_dict=config_dict, **qkwargs)

    quick_start_module.quick_start = quick_start  # main.py imports the name from the module
    sys.argv = [str(main_py), *passthrough]
    runpy.run_path(str(main_py), run_name="__main__")


if __name__ == "__main__":
    main()
