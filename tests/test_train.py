import io
import json
import sys

import pytest
import torch

from pyg_multirec.datasets import SyntheticMultiModal
from pyg_multirec.evaluation import evaluate
from pyg_multirec.experiment import run_example
from pyg_multirec.models import MF
from pyg_multirec.train import EarlyStopping, TrainingState, train
from tests.helpers import baseline_recall, load_example, record_evaluated_splits


def _mf(data, seed=0):
    torch.manual_seed(seed)
    return MF(data["user"].num_nodes, data["item"].num_nodes, dim=16)


def test_mf_learns_and_beats_baselines(tiny_data, tmp_path):
    result = train(
        _mf(tiny_data),
        tiny_data,
        epochs=40,
        batch_size=256,
        lr=0.01,
        patience=10,
        progress=False,
        history_path=tmp_path / "h.json",
    )
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.7 * losses[0]
    assert result.best_valid["recall@20"] > baseline_recall(tiny_data, kind="random")
    assert result.best_valid["recall@20"] > baseline_recall(tiny_data, kind="popular")
    assert set(result.test) >= {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    assert json.loads((tmp_path / "h.json").read_text())[0]["epoch"] == 1


def test_same_seed_same_metrics(tiny_data):
    runs = [
        train(_mf(tiny_data), tiny_data, epochs=3, batch_size=512, lr=0.01, seed=7, progress=False)
        for _ in range(2)
    ]
    assert runs[0].test == runs[1].test
    assert runs[0].history[-1]["train_loss"] == runs[1].history[-1]["train_loss"]


def test_resume_gives_the_same_result(tiny_data, tmp_path):
    kwargs = dict(batch_size=512, lr=0.01, seed=3, progress=False, patience=0)
    full = train(_mf(tiny_data), tiny_data, epochs=4, **kwargs)
    ckpt = tmp_path / "last.pt"
    train(_mf(tiny_data), tiny_data, epochs=2, checkpoint_path=ckpt, **kwargs)
    resumed = train(
        _mf(tiny_data), tiny_data, epochs=4, checkpoint_path=ckpt, resume=True, **kwargs
    )
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    assert resumed.test == full.test


def test_best_epoch_has_the_best_validation_metric(tiny_data):
    # lr 0.05 overfits quickly: patience runs out, so the last epoch is not the best one.
    result = train(
        _mf(tiny_data), tiny_data, epochs=30, batch_size=512, lr=0.05, patience=2, progress=False
    )
    assert result.stopped_early and result.best_epoch < len(result.history)
    best = max(row["valid_recall@20"] for row in result.history)
    assert result.best_valid["recall@20"] == best
    assert result.history[result.best_epoch - 1]["valid_recall@20"] == best
    assert result.history[-1]["valid_recall@20"] < best


def test_re_evaluating_the_returned_model_gives_best_valid(tiny_data):
    # The last epoch is worse than the best one, so the returned model scores exactly
    # best_valid only if train() restores the best parameters (fails without the restore).
    model = _mf(tiny_data)
    result = train(
        model, tiny_data, epochs=30, batch_size=512, lr=0.05, patience=2, progress=False
    )
    assert result.best_epoch < len(result.history)
    assert result.history[-1]["valid_recall@20"] != result.best_valid["recall@20"]
    assert evaluate(model, tiny_data, "valid") == result.best_valid
    assert evaluate(model, tiny_data, "test") == result.test


def test_on_epoch_end_sees_every_validation_and_its_errors_propagate(tiny_data):
    calls = []
    result = train(
        _mf(tiny_data), tiny_data, epochs=3, batch_size=512, lr=0.01, patience=0,
        progress=False, on_epoch_end=lambda epoch, valid: calls.append((epoch, valid)),
    )
    assert [epoch for epoch, _ in calls] == [1, 2, 3]
    for (_, valid), row in zip(calls, result.history):
        assert valid["recall@20"] == row["valid_recall@20"]

    class Pruned(Exception):
        pass

    def prune(epoch, valid):
        if epoch == 2:
            raise Pruned(epoch)

    with pytest.raises(Pruned):
        train(_mf(tiny_data), tiny_data, epochs=5, batch_size=512, progress=False,
              on_epoch_end=prune)


def test_evaluate_test_false_never_reads_the_test_split(tiny_data, monkeypatch):
    splits = record_evaluated_splits(monkeypatch)
    result = train(_mf(tiny_data), tiny_data, epochs=2, batch_size=512, progress=False,
                   evaluate_test=False)
    assert result.test == {}
    assert splits == ["valid", "valid"]
    train(_mf(tiny_data), tiny_data, epochs=1, batch_size=512, progress=False)
    assert splits[-1] == "test"


class _RecordingMF(MF):
    """MF that records the users and negatives of every training batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.users, self.negatives = [], []

    def loss(self, users, pos_items, neg_items):
        self.users.append(users.clone())
        self.negatives.append(neg_items.clone())
        return super().loss(users, pos_items, neg_items)


def test_negative_items_restricts_the_training_negatives(tiny_data):
    allowed = torch.arange(0, 150, 3)
    model = _RecordingMF(tiny_data["user"].num_nodes, tiny_data["item"].num_nodes, dim=8)
    train(model, tiny_data, epochs=2, batch_size=512, progress=False, negative_items=allowed,
          evaluate_test=False)
    drawn = torch.cat(model.negatives)
    assert drawn.numel() == 2 * tiny_data["user", "train", "item"].edge_index.size(1)
    assert torch.isin(drawn, allowed).all()
    assert drawn.unique().numel() > 10  # not a degenerate draw
    bad_sets = [(torch.tensor([0, 150]), ValueError), (allowed[:0], ValueError),
                (allowed.float(), TypeError), (allowed.view(2, -1), ValueError)]
    for bad, error in bad_sets:
        with pytest.raises(error, match="negative_items"):
            train(_mf(tiny_data), tiny_data, epochs=1, progress=False, negative_items=bad)


def test_pair_sampling_users_weighs_users_equally(tiny_data):
    edges = tiny_data["user", "train", "item"].edge_index
    degree = torch.bincount(edges[0], minlength=tiny_data["user"].num_nodes).float()
    heavy = degree > degree.median()
    share = {}
    for mode in ("edges", "users"):
        model = _RecordingMF(tiny_data["user"].num_nodes, tiny_data["item"].num_nodes, dim=8)
        train(model, tiny_data, epochs=2, batch_size=512, progress=False, evaluate_test=False,
              pair_sampling=mode)  # fmt: skip
        users = torch.cat(model.users)
        assert users.numel() == 2 * edges.size(1)  # an epoch has as many triples either way
        share[mode] = heavy[users].float().mean().item()
    # edges: the heavy users' share of the interactions; users: about their share of users
    assert share["edges"] == pytest.approx((degree * heavy).sum().item() / edges.size(1))
    assert abs(share["users"] - heavy[degree > 0].float().mean().item()) < 0.05
    assert share["users"] < share["edges"] - 0.1
    with pytest.raises(ValueError, match="'pair_sampling' must be one of"):
        train(_mf(tiny_data), tiny_data, epochs=1, progress=False, pair_sampling="items")


def test_progress_off_a_terminal_is_one_plain_line_per_epoch(tiny_data, capsys):
    # pytest's captured streams are not terminals: no tqdm redraws, one line per epoch
    train(_mf(tiny_data), tiny_data, epochs=3, batch_size=256, patience=0, progress=True,
          evaluate_test=False)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3
    for epoch, line in enumerate(lines, 1):
        assert line.split()[:2] == ["epoch", str(epoch)]
        assert "loss" in line and "valid recall@20" in line and "best" in line
        assert line.endswith("s")
    assert "\r" not in out + err and err == ""


def test_progress_on_a_terminal_draws_bars(tiny_data, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    train(_mf(tiny_data), tiny_data, epochs=1, batch_size=256, progress=True,
          evaluate_test=False)
    assert "\r" in terminal.getvalue() and "epoch 1" in terminal.getvalue()


def test_too_few_items_for_the_cut_off_fails_before_training():
    data = SyntheticMultiModal(num_users=40, num_items=15, num_interactions=300, seed=0)[0]
    model = _RecordingMF(40, 15, dim=8)
    with pytest.raises(ValueError, match=r"15 items, fewer than the metric cut-off 20"):
        train(model, data, epochs=2, progress=False)
    assert model.negatives == []  # no training step was taken
    result = train(model, data, epochs=1, ks=(5, 10), monitor="recall@10", progress=False)
    assert set(result.test) >= {"recall@5", "recall@10"}


def _write_interactions_only(data, folder):
    rows = ["userID\titemID\tx_label"]
    for label, split in enumerate(("train", "valid", "test")):
        edges = data["user", split, "item"].edge_index
        rows += [f"{u}\t{i}\t{label}" for u, i in edges.t().tolist()]
    folder.mkdir(parents=True)
    (folder / f"{folder.name}.inter").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("example", ["mf", "lightgcn"])
def test_interaction_only_folder_trains_mf_and_lightgcn(tiny_data, tmp_path, example):
    _write_interactions_only(tiny_data, tmp_path / "plain")
    module = load_example(example)
    argv = ["train", "--dataset", "plain", "--data-root", str(tmp_path), "--epochs", "2",
            "--batch-size", "512", "--quiet", "--out", str(tmp_path / "out")]
    result = run_example(example, module.build, module.add_arguments, argv=argv)
    assert len(result.history) == 2 and result.test["recall@20"] > 0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["best_epoch"] >= 1


def test_checkpoint_state_round_trip_and_version(tiny_data, tmp_path):
    ckpt = tmp_path / "last.pt"
    train(_mf(tiny_data), tiny_data, epochs=2, batch_size=512, progress=False,
          checkpoint_path=ckpt, evaluate_test=False)
    state = TrainingState.load(ckpt)
    assert state.epoch == 2 and len(state.history) == 2
    assert set(state.states) == {"model", "optimizer", "stopping"}
    assert state.states["stopping"]["best_epoch"] in (1, 2)
    assert not list(tmp_path.glob("*.tmp"))  # written aside, then moved into place
    torch.save({"version": 1, "epoch": 2}, ckpt)
    with pytest.raises(ValueError, match="not a training checkpoint of version"):
        train(_mf(tiny_data), tiny_data, epochs=3, progress=False, checkpoint_path=ckpt,
              resume=True)


def test_early_stopping_counts_epochs_without_improvement():
    stopper = EarlyStopping("recall@20", patience=2)
    model = torch.nn.Linear(1, 1)
    assert stopper.update(1, {"recall@20": 0.1}, model)
    assert not stopper.update(2, {"recall@20": 0.1}, model)  # equal is no improvement
    assert not stopper.should_stop
    assert not stopper.update(3, {"recall@20": 0.05}, model)
    assert stopper.should_stop and stopper.best_epoch == 1
    assert stopper.update(4, {"recall@20": 0.2}, model) and not stopper.should_stop
    assert not EarlyStopping("recall@20", patience=0).should_stop


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(monitor="auc"), "monitor"),
        (dict(monitor="recall@50"), "ks"),
        (dict(resume=True), "checkpoint_path"),
        (dict(monitor="recall@"), "monitor"),
        (dict(patience=-1), "patience"),
    ],
)
def test_bad_arguments(tiny_data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        train(_mf(tiny_data), tiny_data, progress=False, **kwargs)


def test_on_epoch_end_sees_every_validation_and_can_stop_training(tiny_data):
    seen = []

    def record(epoch, valid):
        seen.append((epoch, valid["recall@20"]))

    result = train(
        _mf(tiny_data), tiny_data, epochs=3, batch_size=512, lr=0.01, patience=0,
        progress=False, on_epoch_end=record,
    )  # fmt: skip
    assert seen == [(row["epoch"], row["valid_recall@20"]) for row in result.history]
    assert [epoch for epoch, _ in seen] == [1, 2, 3]

    class Stop(Exception):
        pass

    def stop_at_two(epoch, valid):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(_mf(tiny_data), tiny_data, epochs=5, batch_size=512, progress=False,
              on_epoch_end=stop_at_two)  # fmt: skip
