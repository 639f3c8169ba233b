"""Data-parallel training: two processes (torchrun, gloo on the CPU) against one.

The module is also the script that torchrun starts (``__main__`` below): one launch checks
one uneven SGD step, trains LightGCN for 3 epochs through the example command line (writing
history.json and the checkpoint last.pt), resumes that checkpoint for a 4th epoch, then
trains MICRO and SEA for 2 short epochs, whose trainer checks at every
epoch that the processes hold the same parameters and buffers (MICRO's rebuilt item graph,
SEA's CLUB estimator fitted by its own optimizer, batch-norm statistics).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyg_multirec import distributed
from pyg_multirec.distributed import Replicas
from pyg_multirec.experiment import run_example
from tests.helpers import SMALL_SYNTHETIC_ARGS, load_example

REPO = Path(__file__).resolve().parents[1]  # torchrun starts this file with it on PYTHONPATH

WORLD_SIZE = 2
# 250 triples per step (125 per process); with 2001 interactions (1567 for training) the
# last batch of an epoch has 67 triples, split 34 / 33, which the loss weights must handle.
# The squared L2 form: it is a sum over samples, so slicing the batch over processes keeps it
# exact (the "norm" form is one Frobenius norm per batch matrix: see docs/distributed.md).
LIGHTGCN_ARGS = [*SMALL_SYNTHETIC_ARGS, "--synthetic-interactions", "2001", "--batch-size", "250",
                 "--patience", "0", "--seed", "1", "--layers", "2", "--reg-form", "squared",
                 "--reg-weight", "1e-4"]
SHORT_ARGS = [*SMALL_SYNTHETIC_ARGS, "--batch-size", "128", "--epochs", "2", "--max-batches", "2"]
DDP_EPOCHS = 3
# Not bitwise: each process averages the loss over its half of a batch and DDP sums the two
# halves' gradients, so float32 sums are taken in another order than in one process; the
# rounding differences (~1e-7 relative per step) grow slowly over a few epochs.
LOSS_RTOL = 1e-4
# Valid metrics: the parameters differ by rounding only, so at most a tie between two
# nearly equal scores may flip (one item of one user: 1/120 of Recall@20 or less).
METRIC_ATOL = 1e-2
LAUNCH_TIMEOUT_S = 300


def _train(name: str, args: list[str], out: Path):
    module = load_example(name)
    return run_example(name, module.build, module.add_arguments, argv=["train", *args,
                                                                      "--out", str(out)])


def _history(folder: Path) -> list[dict]:
    return json.loads((folder / "history.json").read_text())


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
        "TORCH_CPP_LOG_LEVEL": "ERROR",  # DDP's find_unused_parameters notice
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={WORLD_SIZE}", __file__, str(out)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT_S, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def test_two_processes_follow_the_loss_curve_of_one(two_process_runs, tmp_path):
    one = _train("lightgcn", [*LIGHTGCN_ARGS, "--epochs", str(DDP_EPOCHS)], tmp_path / "one")
    two = _history(two_process_runs / "lightgcn")
    assert len(two) == len(one.history) == DDP_EPOCHS
    for a, b in zip(two, one.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=LOSS_RTOL)
        assert a["valid_recall@20"] == pytest.approx(b["valid_recall@20"], abs=METRIC_ATOL)
    assert two[0]["train_loss"] != two[-1]["train_loss"]  # it trained
    # rank 0 alone wrote the outputs, once
    metrics = json.loads((two_process_runs / "lightgcn" / "metrics.json").read_text())
    assert metrics["best_epoch"] >= 1 and len(metrics["history"]) == DDP_EPOCHS


def test_two_process_checkpoint_resumes_in_one_or_two_processes(two_process_runs, tmp_path):
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copy(two_process_runs / "lightgcn" / "last.pt", resumed_dir / "last.pt")
    epochs = ["--epochs", str(DDP_EPOCHS + 1)]
    resumed = _train("lightgcn", [*LIGHTGCN_ARGS, *epochs, "--resume"], resumed_dir)
    straight = _train("lightgcn", [*LIGHTGCN_ARGS, *epochs], tmp_path / "straight")
    two = _history(two_process_runs / "lightgcn")
    assert resumed.history[:DDP_EPOCHS] == two  # carried over from the checkpoint
    assert len(resumed.history) == DDP_EPOCHS + 1
    assert resumed.history[-1]["train_loss"] == pytest.approx(
        straight.history[-1]["train_loss"], rel=LOSS_RTOL
    )
    resumed_by_two = _history(two_process_runs / "resumed")
    assert resumed_by_two[:DDP_EPOCHS] == two
    assert resumed_by_two[-1]["train_loss"] == pytest.approx(
        straight.history[-1]["train_loss"], rel=LOSS_RTOL
    )


@pytest.mark.parametrize("model", ["micro", "sea"])
def test_models_with_graphs_and_estimators_stay_in_step(two_process_runs, model):
    # The trainer raises if the processes' parameters or buffers differ at an epoch start.
    history = _history(two_process_runs / model)
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in history)


def test_shares_cover_each_batch_once_in_order():
    for size in (250, 7, 1, 3):
        shares = [Replicas(rank, 3).share(size) for rank in range(3)]
        rows = [r for s, w in shares if w > 0 for r in range(size)[s]]
        assert rows == list(range(size))
        assert sum(w for _, w in shares) == pytest.approx(1.0)
    assert Replicas(0, 2).share(250) == (slice(0, 125), 0.5)
    assert Replicas(2, 3).share(2) == (slice(0, 1), 0.0)  # no row: weight 0
    assert Replicas().share(9) == (slice(0, 9), 1.0)


def test_batch_size_must_divide_among_processes(monkeypatch, tiny_data):
    from pyg_multirec.models import MF
    from pyg_multirec.train import train

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    model = MF(tiny_data["user"].num_nodes, tiny_data["item"].num_nodes, dim=8)
    with pytest.raises(ValueError, match="batch_size 255 is not divisible by the number of "
                                         "processes 2"):
        train(model, tiny_data, batch_size=255, progress=False)


def test_environment_detection(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.from_environment() == Replicas(0, 1, 0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(RuntimeError, match="torchrun"):
        distributed.from_environment()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.from_environment() == Replicas(3, 4, 1)
    x = torch.randn(3, 2)
    assert distributed.gather_rows(x) is x  # outside a data-parallel step: no collective


def test_uneven_last_batch_gives_the_gradient_of_the_global_mean(two_process_runs):
    # One SGD step (lr 1) through train_epoch on a 7-triple batch split 4 / 3: the
    # parameter change must be the gradient of the mean over all 7 triples.
    check = json.loads((two_process_runs / "uneven.json").read_text())
    assert check["max_param_error"] < 1e-6
    assert check["loss"] == pytest.approx(check["reference_loss"], rel=1e-6)


def _check_uneven_batch(out: Path) -> None:
    import copy

    from pyg_multirec.models import MF
    from pyg_multirec.train import train_epoch

    replicas, device = distributed.setup(torch.device("cpu"))
    torch.manual_seed(0)
    model = MF(20, 15, dim=4)
    reference = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(1)
    batch = tuple(torch.randint(n, (7,), generator=gen) for n in (20, 15, 15))
    step = distributed.wrap_for_data_parallel(model, replicas, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    with distributed.replicated_step(replicas):
        losses = train_epoch(step, optimizer, [batch], 1, 1, device, replicas=replicas)
    reference_loss = reference.loss(*batch)["loss"]
    reference_loss.backward()
    errors = [
        float((p - (q - q.grad)).abs().max())
        for p, q in zip(model.parameters(), reference.parameters())
    ]
    if replicas.is_main:
        result = {"max_param_error": max(errors), "loss": losses["loss"],
                  "reference_loss": float(reference_loss)}
        (out / "uneven.json").write_text(json.dumps(result))


def _main(out: Path) -> None:
    _check_uneven_batch(out)
    _train("lightgcn", [*LIGHTGCN_ARGS, "--epochs", str(DDP_EPOCHS)], out / "lightgcn")
    replicas, _ = distributed.setup(torch.device("cpu"))
    if replicas.is_main:
        (out / "resumed").mkdir()
        shutil.copy(out / "lightgcn" / "last.pt", out / "resumed" / "last.pt")
    replicas.barrier()
    resume_args = [*LIGHTGCN_ARGS, "--epochs", str(DDP_EPOCHS + 1), "--resume"]
    _train("lightgcn", resume_args, out / "resumed")
    _train("micro", SHORT_ARGS, out / "micro")
    _train("sea", [*SHORT_ARGS, "--club-steps", "2"], out / "sea")


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
