import json

import pytest
import torch
from mf import MF

from pyg_multirec.train import train
from tests.helpers import baseline_recall


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


def test_early_stopping_restores_best(tiny_data):
    result = train(
        _mf(tiny_data), tiny_data, epochs=30, batch_size=512, lr=0.05, patience=2, progress=False
    )
    best = max(row["valid_recall@20"] for row in result.history)
    assert result.best_valid["recall@20"] == best
    assert result.history[result.best_epoch - 1]["valid_recall@20"] == best


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(monitor="auc"), "monitor"),
        (dict(monitor="recall@50"), "ks"),
        (dict(resume=True), "checkpoint_path"),
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


def test_evaluate_test_false_never_touches_the_test_split(tiny_data, monkeypatch):
    import pyg_multirec.train as train_module

    splits = []
    real_evaluate = train_module.evaluate

    def spy(model, data, split="valid", **kwargs):
        splits.append(split)
        return real_evaluate(model, data, split, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", spy)
    result = train(_mf(tiny_data), tiny_data, epochs=2, batch_size=512, progress=False,
                   evaluate_test=False)  # fmt: skip
    assert result.test == {}
    assert splits == ["valid", "valid"]
    train(_mf(tiny_data), tiny_data, epochs=1, batch_size=512, progress=False)
    assert splits[-1] == "test"
