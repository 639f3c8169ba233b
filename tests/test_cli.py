"""Tests of ``pyg-multirec`` (pyg_multirec/cli.py); the writer and readers it calls are tested
in tests/datasets/test_mmrec_writer.py and tests/datasets/test_readers.py."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyg_multirec.cli import main, parse_feature_spec
from tests.datasets.helpers import read_inter_file, read_mapping, reference_split

REPO = Path(__file__).resolve().parents[1]
SPLIT_NAMES = ("train", "valid", "test")

# user -> number of distinct items; 'eve' has 2 (< 3: all train)
USER_COUNTS = {"alice": 10, "bob": 5, "carol": 4, "dave": 3, "eve": 2}
ITEMS = [f"i{j:02d}" for j in range(12)]


@pytest.fixture
def raw(tmp_path: Path) -> dict:
    rng = random.Random(0)
    rows = []
    for user, count in USER_COUNTS.items():
        for item in rng.sample(ITEMS, count):
            rows.append((user, item, rng.randrange(1000, 2000)))
    rows.append(("alice", rows[0][1], rows[0][2] + 500))  # duplicate, later: dropped
    seen = {item for _, item, _ in rows}
    frank = sorted((set(ITEMS) - seen) | set(ITEMS[:3]))  # every item appears at least once
    rows += [("frank", item, 3000 + j) for j, item in enumerate(frank)]
    rng.shuffle(rows)
    csv_path = tmp_path / "log.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "item", "timestamp"])
        writer.writerows(rows)
    text = np.random.default_rng(0).normal(size=(len(ITEMS), 4)).astype(np.float64)
    image = np.random.default_rng(1).normal(size=(len(ITEMS), 3)).astype(np.float32)
    np.save(tmp_path / "text.npy", text)
    np.savez(tmp_path / "image.npz", emb=image, other=np.zeros(2))
    return {"rows": rows, "csv": csv_path, "text": text, "image": image, "dir": tmp_path}


def convert_args(raw: dict, *extra: str) -> list[str]:
    d = raw["dir"]
    return [
        "convert",
        "--interactions", str(raw["csv"]),
        "--feature", f"text={d / 'text.npy'}",
        "--feature", f"image={d / 'image.npz'}:emb",
        "--out", str(d / "out"),
        "--name", "toy",
        *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------


def test_convert_writes_mmrec_layout(raw: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(convert_args(raw)) == 0
    out = capsys.readouterr().out
    folder = raw["dir"] / "out" / "toy"
    assert f"wrote {folder}" in out
    assert sorted(p.name for p in folder.iterdir()) == [
        "i_id_mapping.csv", "image_feat.npy", "text_feat.npy", "toy.inter", "u_id_mapping.csv",
    ]  # fmt: skip

    users = read_mapping(folder / "u_id_mapping.csv")
    items = read_mapping(folder / "i_id_mapping.csv")
    assert list(users) == sorted(users) and list(users.values()) == list(range(len(users)))
    assert list(items) == ITEMS and list(items.values()) == list(range(len(ITEMS)))

    header, table = read_inter_file(folder / "toy.inter")
    assert header == ["userID", "itemID", "timestamp", "x_label"]
    expected = reference_split(raw["rows"])
    inverse_u = {v: k for k, v in users.items()}
    inverse_i = {v: k for k, v in items.items()}
    got = {(inverse_u[u], inverse_i[i]): x for u, i, _, x in table.tolist()}
    assert got == expected
    assert table.shape[0] == len(raw["rows"]) - 1  # one duplicate dropped
    # rows sorted by user, then time
    keys = list(zip(table[:, 0], table[:, 2]))
    assert keys == sorted(keys)

    text = np.load(folder / "text_feat.npy")
    assert text.dtype == np.float32
    np.testing.assert_array_equal(text, raw["text"].astype(np.float32))  # ids already sorted
    np.testing.assert_array_equal(np.load(folder / "image_feat.npy"), raw["image"])


def test_convert_then_mmrec_dataset(raw: dict, capsys: pytest.CaptureFixture) -> None:
    datasets = pytest.importorskip("pyg_multirec.datasets")
    assert main(convert_args(raw)) == 0
    data = datasets.MMRecDataset(raw["dir"] / "out", "toy")[0]
    datasets.validate_data(data)
    expected = reference_split(raw["rows"])
    assert data["user"].num_nodes == len(USER_COUNTS) + 1
    assert data["item"].num_nodes == len(ITEMS)
    assert data.modalities == ["image", "text"]
    for label, split in enumerate(SPLIT_NAMES):
        count = sum(1 for x in expected.values() if x == label)
        assert data["user", split, "item"].edge_index.size(1) == count
    folder = raw["dir"] / "out" / "toy"
    items = read_mapping(folder / "i_id_mapping.csv")
    for original, new in items.items():
        row = raw["text"][ITEMS.index(original)].astype(np.float32)
        np.testing.assert_array_equal(data["item"].text_feat[new].numpy(), row)

    capsys.readouterr()
    assert main(["info", "--data-root", str(raw["dir"] / "out"), "--dataset", "toy"]) == 0
    out = capsys.readouterr().out
    total = len(expected)
    assert f"interactions  {total:,}" in out
    assert "image [3]  text [4]" in out
    sparsity = 100 * (1 - total / ((len(USER_COUNTS) + 1) * len(ITEMS)))
    assert f"{sparsity:.3f}%" in out

    assert main(["info", "--data-root", str(raw["dir"] / "out"), "--dataset", "toy", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["users"] == len(USER_COUNTS) + 1 and summary["items"] == len(ITEMS)
    assert summary["modalities"] == {"image": 3, "text": 4}
    assert summary["interactions"]["total"] == total


def test_info_synthetic(capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("pyg_multirec.datasets")
    args = ["info", "--dataset", "synthetic", "--synthetic-users", "50",
            "--synthetic-items", "40", "--synthetic-interactions", "600", "--json"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["users"] == 50 and summary["items"] == 40
    inter = summary["interactions"]
    assert inter["train"] + inter["valid"] + inter["test"] == inter["total"]
    assert summary["sparsity"] == pytest.approx(1 - inter["total"] / (50 * 40))


def test_convert_overwrite_and_item_ids(raw: dict, capsys: pytest.CaptureFixture) -> None:
    d = raw["dir"]
    assert main(convert_args(raw)) == 0
    # features stored in a shuffled row order, described by --item-ids
    perm = np.random.default_rng(3).permutation(len(ITEMS))
    np.save(d / "text_shuffled.npy", raw["text"][perm])
    (d / "ids.txt").write_text("\n".join(ITEMS[p] for p in perm) + "\n")
    args = ["convert", "--interactions", str(raw["csv"]), "--feature",
            f"text={d / 'text_shuffled.npy'}", "--item-ids", str(d / "ids.txt"),
            "--out", str(d / "out"), "--name", "toy", "--overwrite"]  # fmt: skip
    assert main(args) == 0
    folder = d / "out" / "toy"
    assert not (folder / "image_feat.npy").exists()  # stale modality removed
    np.testing.assert_array_equal(
        np.load(folder / "text_feat.npy"), raw["text"].astype(np.float32)
    )


def test_convert_without_header_and_min_interactions(tmp_path: Path) -> None:
    # user item rating time, tab-separated, no header (MovieLens u.data style)
    rows = [(u, i, 5, 100 * u + i) for u in range(1, 6) for i in range(1, 6) if (u + i) % 4]
    rows += [(9, 42, 1, 7)]  # user 9 and item 42 have one interaction: dropped by K=2
    path = tmp_path / "u.data"
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    np.save(tmp_path / "f.npy", np.arange(5 * 2, dtype=np.float32).reshape(5, 2))
    args = ["convert", "--interactions", str(path), "--no-header", "--time-col", "3",
            "--feature", f"f={tmp_path / 'f.npy'}", "--out", str(tmp_path),
            "--name", "ml", "--min-interactions", "2"]  # fmt: skip
    assert main(args) == 0
    _, table = read_inter_file(tmp_path / "ml" / "ml.inter")
    assert table.shape[0] == len(rows) - 1
    assert set(table[:, 0].tolist()) == set(range(5))
    # 5 feature rows = the 5 kept items (rule: rows already in output order)
    folder = tmp_path / "ml"
    np.testing.assert_array_equal(np.load(folder / "f_feat.npy"), np.load(tmp_path / "f.npy"))
    assert read_mapping(folder / "i_id_mapping.csv") == {str(i): i - 1 for i in range(1, 6)}


# --------------------------------------------------------------------------------------
# errors: status 2, one line, no traceback
# --------------------------------------------------------------------------------------


def _expect_error(args: list[str], match: str, capsys: pytest.CaptureFixture) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert match in err, err


def test_error_missing_file(raw: dict, capsys: pytest.CaptureFixture) -> None:
    args = convert_args(raw)
    args[args.index(str(raw["csv"]))] = str(raw["dir"] / "missing.csv")
    _expect_error(args, "missing.csv does not exist", capsys)
    args = convert_args(raw)
    args[args.index(f"text={raw['dir'] / 'text.npy'}")] = f"text={raw['dir'] / 'nope.npy'}"
    _expect_error(args, "nope.npy does not exist", capsys)


def test_error_unknown_column(raw: dict, capsys: pytest.CaptureFixture) -> None:
    args = convert_args(raw, "--user-col", "customer")
    _expect_error(args, "column 'customer' is not in", capsys)
    _expect_error(convert_args(raw, "--time-col", "when"), "column 'when' is not in", capsys)


def test_error_feature_rows_mismatch(raw: dict, capsys: pytest.CaptureFixture) -> None:
    np.save(raw["dir"] / "text.npy", raw["text"][:-2])
    _expect_error(convert_args(raw), "features['text'] has 10 rows", capsys)


def test_error_nan_feature(raw: dict, capsys: pytest.CaptureFixture) -> None:
    text = raw["text"].copy()
    text[3, 1] = np.nan
    np.save(raw["dir"] / "text.npy", text)
    _expect_error(convert_args(raw), "NaN or infinite", capsys)


def test_error_bad_feature_specs(raw: dict, capsys: pytest.CaptureFixture) -> None:
    d = raw["dir"]
    args = convert_args(raw)
    args[args.index(f"image={d / 'image.npz'}:emb")] = f"image={d / 'image.npz'}"
    _expect_error(args, "holds 2 arrays", capsys)
    args[args.index(f"image={d / 'image.npz'}")] = f"image={d / 'image.npz'}:nokey"
    _expect_error(args, "has no array 'nokey'", capsys)
    args[args.index(f"image={d / 'image.npz'}:nokey")] = "image"
    _expect_error(args, "must look like NAME=FILE.npy", capsys)
    args[args.index("image")] = f"bad-name={d / 'text.npy'}"
    _expect_error(args, "modality name 'bad-name'", capsys)


def test_error_existing_and_reserved(raw: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(convert_args(raw)) == 0
    capsys.readouterr()
    _expect_error(convert_args(raw), "exists; pass overwrite=True (--overwrite)", capsys)
    args = convert_args(raw)
    args[args.index("toy")] = "synthetic"
    _expect_error(args, "reserved", capsys)


def test_error_parquet_without_pyarrow(
    raw: dict, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    parquet = raw["dir"] / "log.parquet"
    parquet.write_bytes(b"PAR1")
    args = convert_args(raw)
    args[args.index(str(raw["csv"]))] = str(parquet)
    _expect_error(args, "needs pyarrow: pip install pyarrow", capsys)


def test_error_info_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("pyg_multirec.datasets")
    _expect_error(["info", "--data-root", str(tmp_path), "--dataset", "nope"], "nope.inter", capsys)


def test_usage_errors_return_2(capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err
    assert main(["convert", "--out", "x"]) == 2
    assert "required" in capsys.readouterr().err
    assert main(["convert", "--help"]) == 0
    assert "feature rows" in capsys.readouterr().out


def test_module_help_subprocess() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pyg_multirec", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for command in ("info", "convert", "plot"):
        assert command in result.stdout


def test_parse_feature_spec() -> None:
    assert parse_feature_spec("a=x.npz:k") == ("a", Path("x.npz"), "k")
    assert parse_feature_spec("a=dir:1/x.npy") == ("a", Path("dir:1/x.npy"), None)
    with pytest.raises(ValueError, match="must look like NAME=FILE.npy"):
        parse_feature_spec("a")


def test_cli_imports_no_private_helpers() -> None:
    # cli.py formats what the public API returns; it reaches into no module's privates.
    import ast

    tree = ast.parse((REPO / "pyg_multirec" / "cli.py").read_text())
    imported = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pyg_multirec")
        for alias in node.names
    ]
    private = [n for n in imported if n.startswith("_") and not n.endswith("__")]
    assert "convert_files" in imported and not private
