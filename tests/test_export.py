"""``export`` and ``recommend --index`` (pyg_multirec.export) on a tiny trained LightGCN."""

import json
import sys

import numpy as np
import pytest
import torch

from pyg_multirec import ann, export
from pyg_multirec.experiment import run_example
from tests.helpers import SMALL_SYNTHETIC_ARGS, load_example


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    lightgcn = load_example("lightgcn")
    out = tmp_path_factory.mktemp("run")
    run_example("lightgcn", lightgcn.build, lightgcn.add_arguments,
                argv=["--epochs", "2", "--out", str(out), *SMALL_SYNTHETIC_ARGS])
    return out / "best.pt"


def users_with_room(data, k=10, count=5):
    """Users with at least ``k`` unseen items (a heavy user of 80 items may have none)."""
    seen = torch.cat([data["user", s, "item"].edge_index for s in ("train", "valid", "test")], 1)
    unseen = data["item"].num_nodes - torch.bincount(seen[0], minlength=data["user"].num_nodes)
    return (unseen >= k).nonzero().view(-1)[:count].tolist()


def run(argv):
    lightgcn = load_example("lightgcn")

    return run_example("lightgcn", lightgcn.build, lightgcn.add_arguments, argv=argv)


def restored(checkpoint):
    import argparse

    lightgcn = load_example("lightgcn")

    from pyg_multirec.experiment import _restore

    args = argparse.Namespace(checkpoint=str(checkpoint), data_root=None)
    return _restore("lightgcn", lightgcn.build, args)


def test_export_writes_the_model_embeddings_with_ids(checkpoint, tmp_path):
    out = tmp_path / "export"
    manifest = run(["export", "--checkpoint", str(checkpoint), "--out", str(out),
                    "--no-parquet"])
    model, data, _ = restored(checkpoint)
    with torch.no_grad():
        user_emb, item_emb = model.embed()
    np.testing.assert_array_equal(np.load(out / "user_embeddings.npy"), user_emb.numpy())
    np.testing.assert_array_equal(np.load(out / "item_embeddings.npy"), item_emb.numpy())
    np.testing.assert_array_equal(np.load(out / "item_ids.npy"), np.arange(item_emb.size(0)))
    saved = json.loads((out / "export.json").read_text())
    assert saved == json.loads(json.dumps(manifest))
    assert saved["num_users"] == data["user"].num_nodes == user_emb.size(0)
    assert saved["dim"] == item_emb.size(1) and saved["index"] is None
    assert saved["checkpoint_sha256"] == export.sha256_file(checkpoint)
    assert not (out / "items.parquet").exists()


def test_parquet_tables_hold_ids_and_embeddings(checkpoint, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "export"
    run(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--parquet"])
    table = pq.read_table(out / "items.parquet")
    assert table.column_names == ["id", "embedding"]
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(emb, np.load(out / "item_embeddings.npy"))
    np.testing.assert_array_equal(table.column("id").to_numpy(), np.load(out / "item_ids.npy"))


def test_parquet_without_pyarrow_is_one_clear_error(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(SystemExit) as err:
        run(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "e"),
             "--parquet"])
    assert err.value.code == 2
    assert "pip install pyarrow" in capsys.readouterr().err
    # without --parquet the export goes ahead with NumPy files only
    manifest = run(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "f")])
    assert not any(f.endswith(".parquet") for f in manifest["files"])


def test_recommend_from_a_flat_index_equals_exact_ranking(checkpoint, tmp_path):
    pytest.importorskip("faiss")
    out = tmp_path / "export"
    run(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--index", "flat"])
    assert (out / "items.faiss").is_file() and (out / "items.faiss.json").is_file()
    _, data, _ = restored(checkpoint)
    for user in users_with_room(data):
        exact = run(["recommend", "--checkpoint", str(checkpoint), "--user", str(user)])
        served = run(["recommend", "--checkpoint", str(checkpoint), "--user", str(user),
                      "--index", str(out)])
        assert served == exact


def test_recommend_from_an_hnsw_index_excludes_seen_items(checkpoint, tmp_path):
    pytest.importorskip("faiss")
    out = tmp_path / "export"
    run(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--index", "hnsw"])
    _, data, _ = restored(checkpoint)
    seen = torch.cat([data["user", s, "item"].edge_index for s in ("train", "valid", "test")], 1)
    for user in users_with_room(data, count=10):
        served = export.recommend_from_index(out, data, user, k=10)
        exact = run(["recommend", "--checkpoint", str(checkpoint), "--user", str(user)])
        assert len(served) == 10 and len(set(served)) == 10
        assert not set(served) & set(seen[1, seen[0] == user].tolist())
        assert len(set(served) & set(exact)) >= 9  # 80 items: HNSW is all but exact


def test_index_built_for_other_embeddings_is_refused(checkpoint, tmp_path, capsys):
    pytest.importorskip("faiss")
    out = tmp_path / "export"
    run(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--index", "hnsw"])
    _, data, _ = restored(checkpoint)
    item_file = out / "item_embeddings.npy"
    items = np.load(item_file)
    np.save(item_file, items + 1e-3)  # same shape, other values
    user = users_with_room(data)[0]
    with pytest.raises(ValueError, match="built for other item embeddings"):
        export.recommend_from_index(out, data, user)
    np.save(item_file, items[:, :-1])  # other dimension
    with pytest.raises(ValueError, match="was built for .* item embeddings of dim"):
        export.recommend_from_index(out, data, user)
    np.save(item_file, items)
    assert len(export.recommend_from_index(out, data, user)) == 10
    with pytest.raises(ValueError, match=f"was built for {len(items)} item embeddings"):
        ann.load_index(out / "items.faiss", torch.from_numpy(items[:-1]))  # other count
    faiss = pytest.importorskip("faiss")
    other_index = faiss.IndexFlatIP(items.shape[1])
    other_index.add(items[:5])
    faiss.write_index(other_index, str(tmp_path / "other.faiss"))
    (tmp_path / "other.faiss.json").write_text((out / "items.faiss.json").read_text())
    with pytest.raises(ValueError, match="holds 5 vectors .* but its metadata"):
        ann.load_index(tmp_path / "other.faiss")
    # another checkpoint, through the command line: one clear message, exit code 2
    other = tmp_path / "other.pt"
    other.write_bytes(checkpoint.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="exported from another checkpoint"):
        export.recommend_from_index(out, data, user, checkpoint=other)
    (out / "items.faiss.json").unlink()
    with pytest.raises(SystemExit) as err:
        run(["recommend", "--checkpoint", str(checkpoint), "--user", str(user),
             "--index", str(out)])
    assert err.value.code == 2 and "items.faiss.json does not exist" in capsys.readouterr().err


def test_export_without_index_cannot_serve(checkpoint, tmp_path):
    out = tmp_path / "export"
    run(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--no-parquet"])
    _, data, _ = restored(checkpoint)
    with pytest.raises(ValueError, match="has no FAISS index"):
        export.recommend_from_index(out, data, 0)
    with pytest.raises(FileNotFoundError, match="not a folder written by 'export'"):
        export.recommend_from_index(tmp_path, data, 0)


def test_index_without_faiss_is_one_clear_error(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(SystemExit) as err:
        run(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "e"),
             "--index", "hnsw"])
    assert err.value.code == 2 and "pip install faiss-cpu" in capsys.readouterr().err


def test_read_id_mapping(tmp_path):
    (tmp_path / "i_id_mapping.csv").write_text("asin\titemID\nB00X\t1\nA01\t0\nC7\t2\n")
    ids = export.read_id_mapping(tmp_path, "item", 3)
    assert ids.tolist() == ["A01", "B00X", "C7"]
    (tmp_path / "u_id_mapping.csv").write_text("userID_orig\tuserID\n7\t1\n3\t0\n")
    ids = export.read_id_mapping(tmp_path, "user", 2)
    assert ids.dtype == np.int64 and ids.tolist() == [3, 7]
    assert export.read_id_mapping(tmp_path / "none", "user", 2) is None
    with pytest.raises(ValueError, match="maps 2 of the 3 user ids"):
        export.read_id_mapping(tmp_path, "user", 3)
    (tmp_path / "u_id_mapping.csv").write_text("userID_orig\tuserID\n7\t1\n3\t1\n")
    with pytest.raises(ValueError, match="out of range 0..1 or repeated"):
        export.read_id_mapping(tmp_path, "user", 2)


def test_export_uses_the_original_ids_of_real_data(ml100k_root, tmp_path):
    mf = load_example("mf")

    run_dir = tmp_path / "run"
    run_example("mf", mf.build, mf.add_arguments,
                argv=["--dataset", "ml100k", "--data-root", str(ml100k_root), "--epochs", "1",
                      "--max-batches", "2", "--out", str(run_dir), "--quiet"])
    out = tmp_path / "export"
    manifest = run_example("mf", mf.build, mf.add_arguments,
                           argv=["export", "--checkpoint", str(run_dir / "best.pt"),
                                 "--out", str(out), "--no-parquet"])
    assert manifest["ids"].startswith("MMRec id mapping")
    expected = export.read_id_mapping(ml100k_root / "ml100k", "item", manifest["num_items"])
    np.testing.assert_array_equal(np.load(out / "item_ids.npy"), expected)
    assert np.load(out / "user_ids.npy")[0] == 1  # MovieLens user 1 is internal user 0
