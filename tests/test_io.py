"""``pyg_multirec.io`` is a deprecated alias of the writer now in ``pyg_multirec.datasets``."""

import importlib

import pytest

import pyg_multirec.datasets as datasets


@pytest.mark.parametrize("name", ["write_mmrec", "read_interactions", "read_feature", "read_ids"])
def test_old_imports_work_and_warn(name):
    io = importlib.import_module("pyg_multirec.io")
    with pytest.warns(DeprecationWarning, match=f"from pyg_multirec.datasets import {name}"):
        moved = getattr(io, name)
    assert moved is getattr(datasets, name)


def test_from_import_warns_and_unknown_names_say_where_to_look():
    with pytest.warns(DeprecationWarning, match="pyg_multirec.io is deprecated"):
        from pyg_multirec.io import write_mmrec
    assert write_mmrec is datasets.write_mmrec
    with pytest.warns(DeprecationWarning, match="pyg_multirec.datasets.splits import"):
        from pyg_multirec.io import HOLDOUT_FRACTION
    assert HOLDOUT_FRACTION == 0.1
    io = importlib.import_module("pyg_multirec.io")
    with pytest.raises(AttributeError, match="are in pyg_multirec.datasets"):
        io._build  # noqa: B018
