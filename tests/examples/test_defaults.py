"""Each example ships its validated best: its command-line defaults are the configuration
of its row in the archived results (``docs/tuning/results``, written by
``examples/reproduce_results.py``), so a run with no flags trains the table's model."""

import json

import pytest

from pyg_multirec.experiment import build_parser
from tests.helpers import REPO, load_example

ARCHIVE = REPO / "docs" / "tuning" / "results" / "ml100k" / "warm"
#: The warm row whose configuration each example's defaults train.
DEFAULT_ROWS = {
    "mf": "MF-BPR",
    "lightgcn": "LightGCN",
    "vbpr": "VBPR",
    "micro": "MICRO (MF)",  # the LightGCN backbone's search is not finished
    "sea": "SEA-a (SoloSim + CLUB)",
}


@pytest.mark.parametrize("name", sorted(DEFAULT_ROWS))
def test_defaults_are_the_tuned_row(name):
    reproduce = load_example("reproduce_results")
    (row,) = [r for r in reproduce.WARM if r.label == DEFAULT_ROWS[name]]
    assert row.script == name
    best = json.loads((ARCHIVE / reproduce._slug(row.label) / "best.json").read_text())
    example = load_example(name)
    parser = build_parser(name, example.add_arguments, example.DEFAULTS)
    shipped = vars(parser.parse_args(["train"]))
    for param, value in best["params"].items():
        assert shipped[param] == value, f"examples/{name}.py --{param.replace('_', '-')}"
    # The row's own flags (e.g. MICRO's --backbone) change nothing that the defaults set;
    # None marks a default resolved later (SEA's --variant a is its default losses).
    row_args = vars(parser.parse_args(["train", *row.flags]))
    changed = {k for k in shipped if shipped[k] is not None and shipped[k] != row_args[k]}
    assert not changed, f"examples/{name}.py defaults differ from the row in {sorted(changed)}"
