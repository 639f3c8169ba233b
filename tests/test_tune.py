"""The ``tune`` sub-command: grid and TPE search on the validation split, resumable SQLite
studies, parallel worker processes, seed re-training, and clear errors for bad input."""

import argparse
import csv
import json
import shutil

import pytest

optuna = pytest.importorskip("optuna")

import pyg_multirec.tune as tune_module  # noqa: E402
from pyg_multirec.experiment import run_example  # noqa: E402
from pyg_multirec.tune import (  # noqa: E402
    DB_FILE,
    STUDY_NAME,
    Range,
    parse_spec,
    resolve_space,
    searchable_flags,
)
from tests.helpers import (  # noqa: E402
    SMALL_SYNTHETIC_ARGS,
    load_example,
    record_evaluated_splits,
)

lightgcn, mf = load_example("lightgcn"), load_example("mf")

FAST = [*SMALL_SYNTHETIC_ARGS, "--epochs", "2", "--batch-size", "512"]


def _tune(module, name, *argv):
    # One learning rate: the tests' grids are over the other parameters only.
    pinned = ["--space", "lr=0.001"] if "lr" in module.SEARCH_SPACE else []
    return run_example(
        name,
        module.build,
        module.add_arguments,
        getattr(module, "DEFAULTS", None),
        argv=["tune", *FAST, *pinned, *argv],
        search_space=module.SEARCH_SPACE,
    )


def _rows_values(out, name="reg_weight"):
    return [float(r[name]) for r in _rows(out)]


def _rows(out):
    with (out / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def test_grid_search_selects_on_valid_and_never_tests_during_the_search(tmp_path, monkeypatch):
    splits = record_evaluated_splits(monkeypatch)
    out = tmp_path / "mf"
    best = _tune(mf, "mf", "--space", "reg_weight=1e-3,1e-1", "--out", str(out), "--seeds", "0")

    # Search: 2 grid points x 2 epochs of validation, no test; then one seed re-trained,
    # whose test split is read exactly once, at the end.
    assert splits[:4] == ["valid"] * 4
    assert splits.count("test") == 1 and splits[-1] == "test"
    rows = _rows(out)
    assert [r["state"] for r in rows] == ["complete", "complete"]
    assert {float(r["reg_weight"]) for r in rows} == {1e-3, 1e-1}
    assert {r["reg_form"] for r in rows} == {"norm"}  # the example's default, kept
    winner = max(rows, key=lambda r: (float(r["valid_recall@20"]), -int(r["trial"])))
    assert best["params"]["reg_weight"] == float(winner["reg_weight"])
    assert best["valid"] == pytest.approx(float(winner["valid_recall@20"]))
    assert json.loads((out / "best.json").read_text())["params"] == best["params"]
    assert (out / "trials.md").read_text().startswith("| trial | state | reg_weight")
    seed0 = best["seeds"]["0"]
    # The seed-0 re-training repeats the winning trial: same validation score.
    assert seed0["best_valid"]["recall@20"] == pytest.approx(best["valid"])
    assert set(seed0["test"]) >= {"recall@20", "ndcg@20", "coverage@20", "novelty@20"}
    assert best["test_mean"]["recall@20"] == seed0["test"]["recall@20"]


def test_killed_search_resumes_without_losing_finished_trials(tmp_path, monkeypatch):
    out = tmp_path / "mf"
    space = ["--space", "reg_weight=1e-3,1e-2,1e-1", "--out", str(out)]
    _tune(mf, "mf", *space, "--trials", "1")
    storage = f"sqlite:///{out / DB_FILE}"
    first = optuna.load_study(study_name=STUDY_NAME, storage=storage).trials[0]
    # The rest of the grid is queued (as run_tune does) and popped by two workers; one is
    # killed in the middle of its trial, which stays RUNNING in the database.
    grid = {"reg_weight": [1e-3, 1e-2, 1e-1], "reg_form": ["norm"], "lr": [1e-3]}
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    assert tune_module.enqueue_grid(optuna, study, grid, limit=2) == 2
    stale = study.ask()
    stale_params = {k: stale.suggest_categorical(k, v) for k, v in grid.items()}
    # Ctrl-C in a trial: Optuna marks it failed, the objective marks it interrupted.
    stopped = study.ask()
    stopped_params = {k: stopped.suggest_categorical(k, v) for k, v in grid.items()}

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(tune_module, "fit", ctrl_c)
        context = tune_module._Context("mf", mf.build, {}, {}, str(out), False, 0, 0, 0)
        with pytest.raises(KeyboardInterrupt):
            tune_module._objective(stopped, context)
    # As Optuna does inside optimize().
    optuna.load_study(study_name=STUDY_NAME, storage=storage).tell(
        stopped.number, state=optuna.trial.TrialState.FAIL
    )

    best = _tune(mf, "mf", *space)
    trials = optuna.load_study(study_name=STUDY_NAME, storage=storage).trials
    assert trials[0].datetime_start == first.datetime_start  # kept, not run again
    assert trials[0].value == first.value
    states = [r["state"] for r in _rows(out)]
    assert states.count("complete") == 3 and states.count("interrupted") == 2
    done = [t.params for t in trials if t.state.name == "COMPLETE"]
    assert sorted(p["reg_weight"] for p in done) == [1e-3, 1e-2, 1e-1]  # the whole grid
    assert stale_params in done and stopped_params in done  # interrupted ones run again
    assert best["trials"] == {"complete": 3, "interrupted": 2}
    _tune(mf, "mf", *space)  # a finished search runs no trial again
    assert len(optuna.load_study(study_name=STUDY_NAME, storage=storage).trials) == len(trials)


def test_tpe_ranges_in_parallel_worker_processes(tmp_path):
    out = tmp_path / "lightgcn"
    best = _tune(
        lightgcn, "lightgcn", "--space", "lr=1e-3:1e-1:log", "--space", "layers=1:3",
        "--trials", "2", "--jobs", "2", "--out", str(out),
    )  # fmt: skip
    rows = _rows(out)
    assert [r["state"] for r in rows] == ["complete", "complete"]
    for row in rows:
        assert 1e-3 <= float(row["lr"]) <= 1e-1
        assert row["layers"] in {"1", "2", "3"}
        assert float(row["seconds"]) > 0 and int(row["best_epoch"]) in (1, 2)
    assert rows[0]["lr"] != rows[1]["lr"]  # the two workers did not propose the same point
    assert best["params"]["layers"] in (1, 2, 3)


def test_space_parsing():
    flags = searchable_flags(lightgcn.add_arguments)
    assert parse_spec("reg_weight", "1e-3, 1e-2,1e-3", flags["reg_weight"]) == [1e-3, 1e-2]
    assert parse_spec("layers", "1:4", flags["layers"]) == Range(1, 4, integer=True)
    assert parse_spec("lr", "1e-4:1e-2:log", flags["lr"]) == Range(1e-4, 1e-2, log=True)
    assert parse_spec("reg_form", ["norm"], flags["reg_form"]) == ["norm"]
    space = resolve_space(lightgcn.SEARCH_SPACE, ["reg-weight=1e-4", "lr=1e-3:1e-2"], flags)
    assert space["reg_weight"] == [1e-4] and space["layers"] == [1, 2, 3, 4]
    assert space["lr"] == Range(1e-3, 1e-2)


@pytest.mark.parametrize(
    "space, match",
    [
        ("depth=1,2", "'depth': unknown parameter"),
        ("seed=1,2", "cannot be searched"),
        ("lr=1e-2:1e-4", "empty range"),
        ("lr=1e-4:", "bounds must be float"),
        ("lr=1e-4:1e-2:cubic", "LOW:HIGH or LOW:HIGH:log"),
        ("lr=0:1e-2:log", "LOW > 0"),
        ("reg_weight=", "empty value list"),
        ("reg_weight=abc", "not a valid float value"),
        ("reg_form=cube", "'cube' is not an allowed value of 'reg_form'"),
        ("reg_form=a:b", "takes a list of values"),
        ("reg_weight", "NAME=VALUES"),
    ],
)
def test_bad_search_space_gives_one_clear_error_line(tmp_path, capsys, space, match):
    with pytest.raises(SystemExit) as exit_info:
        _tune(mf, "mf", "--space", space, "--out", str(tmp_path / "x"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert match in err


def test_study_folder_of_another_model_or_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "study"
    _tune(mf, "mf", "--space", "reg_weight=1e-3", "--epochs", "1", "--out", str(out))
    capsys.readouterr()
    for module, name, extra, match in [
        (lightgcn, "lightgcn", [], "holds a tune study of the 'mf' model, not 'lightgcn'"),
        (mf, "mf", ["--space", "reg_weight=1e-2"], "another search space"),
        (mf, "mf", ["--space", "reg_weight=1e-3", "--epochs", "3"], "epochs: 1 -> 3"),
    ]:
        with pytest.raises(SystemExit):
            _tune(module, name, "--epochs", "1", "--out", str(out), *extra)
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and match in err, err


def _fake_best(recalls, params):
    seeds = {
        str(s): {
            "test": {"recall@10": r / 2, "recall@20": r, "ndcg@10": r / 3, "ndcg@20": r / 2,
                     "coverage@20": 0.5, "novelty@20": 3.0, "gini@20": 0.4, "avg_pop@20": 9.0},
            "best_valid": {"recall@20": r},
            "best_epoch": 7,
            "seconds_per_epoch": 0.25,
            "device": "cpu",
        }
        for s, r in enumerate(recalls)
    }  # fmt: skip
    return {"params": params, "seeds": seeds, "trials": {"complete": 2, "pruned": 1}}


def test_reproduce_table_paired_t_test_by_hand():
    rr = load_example("reproduce_results")

    lightgcn_best = _fake_best([0.09, 0.10, 0.11], {"layers": 2, "reg_weight": 1e-4})
    mf_best = _fake_best([0.10, 0.12, 0.14], {"reg_weight": 1e-3})
    # Differences 0.01, 0.02, 0.03: t = 0.02 / (0.01 / sqrt(3)) = sqrt(12) with 2 degrees
    # of freedom, whose CDF is 1/2 + t / (2 sqrt(t^2 + 2)): p = 1 - sqrt(12 / 14) = 0.0742.
    assert rr.paired_p_value(mf_best, lightgcn_best) == "0.074"
    assert rr.paired_p_value(mf_best, None) == "-"
    assert rr.paired_p_value(_fake_best([0.1], {}), lightgcn_best) == "-"  # one shared seed
    text = rr.table([(rr.Row("MF-BPR", "mf"), mf_best), (rr.Row("LightGCN", "lightgcn"),
                     lightgcn_best), (rr.Row("VBPR", "vbpr"), None)])  # fmt: skip
    lines = text.splitlines()
    assert lines[0].startswith("| model | tuned parameters | R@10 | R@20 |")
    assert len(lines) == 6  # header, rule, two finished rows, a blank line, the missing row
    assert lines[5] == "Not finished yet (no search with re-trained seeds): VBPR."
    mf_row = lines[2].split(" | ")
    assert mf_row[1] == "reg_weight=0.001"
    assert mf_row[3] == "0.1200 ± 0.0200" and "0.074" in mf_row
    assert lines[3].split(" | ")[1] == "layers=2, reg_weight=0.0001"
    assert " | 2 complete, 1 pruned | " in lines[3]
    confirmed = {**lightgcn_best, "confirmed": {"0": {}, "4": {}, "7": {}}}
    text = rr.table([(rr.Row("LightGCN", "lightgcn"), confirmed)])
    assert " | 2 complete, 1 pruned; best 3 confirmed | " in text


def test_reproduce_tables_keep_the_finished_rows_of_rows_not_run(tmp_path, capsys):
    """--only, --skip-warm and --skip-cold choose what runs; the tables show every finished
    row of both protocols, and name the rows still missing."""
    rr = load_example("reproduce_results")
    runs, report = tmp_path / "runs", tmp_path / "results.md"
    report.write_text(f"# R\n\nintro\n\n{rr.START}\nstale table\n{rr.END}\n\ntail\n")
    for kind, label, recalls in [("warm", "LightGCN", [0.1, 0.11, 0.12]),
                                 ("cold", "VBPR", [0.05, 0.06, 0.07])]:  # fmt: skip
        out = runs / "ml100k" / kind / rr._slug(label)
        out.mkdir(parents=True)
        (out / "best.json").write_text(json.dumps(_fake_best(recalls, {"reg_weight": 0.1})))
    # Nothing is trained: LightGCN is finished, and every other row is left out.
    rr.main(["--only", "LightGCN", "--skip-cold", "--runs", str(runs), "--report", str(report)])
    text = report.read_text()
    assert text.startswith("# R\n\nintro\n\n") and text.endswith(f"{rr.END}\n\ntail\n")
    warm, cold = text.split("### ml100k, warm start")[1].split("### ml100k, cold start")
    assert "| LightGCN | reg_weight=0.1 | " in warm and "| 0.1100 ± 0.0100 |" in warm
    assert "| VBPR | reg_weight=0.1 | " in cold and "| 0.0600 ± 0.0100 |" in cold
    assert "stale table" not in text and "no search in" not in capsys.readouterr().out
    # --archive keeps what rebuilds the tables, and --tables-only rebuilds them from it.
    (runs / "ml100k" / "warm" / "lightgcn" / "trials.md").write_text("| trial |\n")
    archived = tmp_path / "archive"
    rr.main(["--tables-only", "--runs", str(runs), "--report", str(report),
             "--archive", str(archived)])  # fmt: skip
    assert sorted(p.name for p in (archived / "ml100k" / "warm" / "lightgcn").iterdir()) == [
        "best.json", "trials.md"]  # fmt: skip
    (rebuilt := tmp_path / "rebuilt.md").write_text(report.read_text())
    rr.main(["--tables-only", "--runs", str(archived), "--report", str(rebuilt)])
    assert rebuilt.read_text() == text
    missing = [line for line in warm.splitlines() if line.startswith("Not finished yet")]
    assert missing and ": MF-BPR, VBPR, VBPR + SEA, MICRO (MF)," in missing[0]
    assert "MICRO (LightGCN)" in missing[0] and ": LightGCN" not in missing[0]


def test_grid_points_are_queued_once_each(tmp_path):
    """Parallel workers pop queued grid points, so none runs twice and none is skipped."""
    space = {"layers": [1, 2], "reg_weight": [1e-3, 1e-2, 1e-1]}
    study = optuna.create_study(direction="maximize")
    done = study.ask({"layers": optuna.distributions.CategoricalDistribution([1, 2]),
                      "reg_weight": optuna.distributions.CategoricalDistribution(
                          space["reg_weight"])})  # fmt: skip
    study.tell(done, 0.1)
    assert tune_module.enqueue_grid(optuna, study, space, limit=3) == 3
    assert tune_module.enqueue_grid(optuna, study, space, limit=3) == 3  # nothing new
    assert tune_module.enqueue_grid(optuna, study, space, limit=10) == 5  # the rest of 6
    for _ in range(5):  # what the workers do: each trial pops one queued point
        trial = study.ask()
        for name, values in space.items():
            trial.suggest_categorical(name, values)
        study.tell(trial, 0.0)
    points = [(t.params["layers"], t.params["reg_weight"]) for t in study.trials]
    assert sorted(points) == sorted((a, b) for a in space["layers"] for b in space["reg_weight"])


def test_search_seeds_score_each_trial_by_its_mean_valid_over_seeds(tmp_path, capsys, monkeypatch):
    runs = []
    real_fit = tune_module.fit

    def spy(ctx, args, on_epoch_end=None, on_resume=None):
        result = real_fit(ctx, args, on_epoch_end, on_resume)
        runs.append((args.reg_weight, args.seed, result.best_valid["recall@20"]))
        return result

    monkeypatch.setattr(tune_module, "fit", spy)
    out = tmp_path / "mf"
    space = ["--space", "reg_weight=1e-3,1e-1", "--out", str(out)]
    best = _tune(mf, "mf", *space, "--search-seeds", "3,4", "--no-prune")
    # Every trial trains once per search seed (never with --seed 0) and scores their mean.
    assert sorted((w, s) for w, s, _ in runs) == [(1e-3, 3), (1e-3, 4), (1e-1, 3), (1e-1, 4)]
    means = {w: (a + b) / 2 for w in (1e-3, 1e-1)
             for (wa, _, a), (wb, _, b) in [[r for r in runs if r[0] == w]]}  # fmt: skip
    winner = max(means, key=means.get)
    assert best["params"]["reg_weight"] == winner
    assert best["valid"] == pytest.approx(means[winner])
    assert best["selected_on"] == "valid recall@20, mean over seeds [3, 4]"
    rows = {float(r["reg_weight"]): r for r in _rows(out)}
    for w, s, value in runs:
        per_seed = rows[w]["valid_per_seed"].split("/")
        assert float(per_seed[[3, 4].index(s)]) == pytest.approx(value, abs=1e-4)
        assert float(rows[w]["valid_recall@20"]) == pytest.approx(means[w])
    # One search seed: its run replaces --seed, and the per-seed column is still filled.
    single = tmp_path / "mf-one-seed"
    _tune(mf, "mf", "--space", "reg_weight=1e-3", "--out", str(single), "--search-seeds", "3")
    (row,) = _rows(single)
    assert float(row["valid_per_seed"]) == pytest.approx(float(row["valid_recall@20"]), abs=1e-4)
    assert runs[-1][:2] == (1e-3, 3)
    capsys.readouterr()
    # The study's seeds are part of it: another list is refused; a bad list is one error.
    for extra, match in [
        (["--search-seeds", "3"], "holds a study scored over --search-seeds [3, 4], not [3]"),
        ([], "not None"),
        (["--search-seeds", "3,x"], "--search-seeds must be comma-separated integers"),
        (["--search-seeds", "3,3"], "--search-seeds has duplicates"),
    ]:
        with pytest.raises(SystemExit):
            _tune(mf, "mf", *space, *extra)
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and match in err, err


def test_moved_study_folder_keeps_its_finished_seeds(tmp_path, monkeypatch):
    """Seeds are read back when only where or how they ran differs (folder, data root,
    device); a changed training setting trains them again."""
    import shutil

    import pyg_multirec.experiment as experiment

    first = tmp_path / "first"
    _tune(mf, "mf", "--space", "reg_weight=1e-3", "--out", str(first), "--seeds", "0")
    moved = tmp_path / "moved"
    shutil.move(first, moved)
    trained = []
    real_train = experiment._train
    monkeypatch.setattr(experiment, "_train", lambda *a: trained.append(a) or real_train(*a))
    again = ["--space", "reg_weight=1e-3", "--out", str(moved), "--skip-search"]
    best = _tune(mf, "mf", *again, "--seeds", "0", "--eval-batch-size", "64", "--quiet")
    assert trained == []
    saved = json.loads((moved / "seeds" / "s0" / "metrics.json").read_text())
    assert best["seeds"]["0"]["test"] == saved["test"]
    assert saved["config"]["out"] == str(first / "seeds" / "s0")  # the run, as it was
    # A new seed is trained; a seed's settings differ from a finished run: trained again.
    _tune(mf, "mf", *again, "--seeds", "0,1")
    assert [a[2].seed for a in trained] == [1]
    (moved / "seeds" / "s0" / "metrics.json").write_text(
        json.dumps({**saved, "config": {**saved["config"], "dim": 8}})
    )
    _tune(mf, "mf", *again, "--seeds", "0")
    assert [a[2].seed for a in trained] == [1, 0]


def test_confirm_top_rescores_the_best_trials_over_more_seeds(tmp_path, capsys, monkeypatch):
    """--confirm-top trains the search's best trials again with other seeds (validation
    only) and selects on the mean: a configuration that was lucky once loses its place."""
    from types import SimpleNamespace

    planted = {  # (reg_weight, seed) -> best valid Recall@20
        (1e-3, 0): 0.30, (1e-3, 3): 0.10, (1e-3, 4): 0.11,  # lucky on the search seed
        (1e-2, 0): 0.25, (1e-2, 3): 0.24, (1e-2, 4): 0.26,
        (1e-1, 0): 0.05,  # never confirmed: not in the best two
    }  # fmt: skip
    runs = []

    def fake_fit(ctx, args, on_epoch_end=None, on_resume=None):
        value = planted[(args.reg_weight, args.seed)]
        runs.append((args.reg_weight, args.seed))
        if on_epoch_end is not None:
            on_epoch_end(1, {"recall@20": value})
        return SimpleNamespace(best_valid={"recall@20": value}, seconds_per_epoch=0.0)

    monkeypatch.setattr(tune_module, "fit", fake_fit)
    out = tmp_path / "mf"
    argv = ["--space", "reg_weight=1e-3,1e-2,1e-1", "--out", str(out), "--no-prune",
            "--confirm-top", "2", "--confirm-seeds", "3,4"]  # fmt: skip
    best = _tune(mf, "mf", *argv)
    assert sorted(runs[:3]) == [(1e-3, 0), (1e-2, 0), (1e-1, 0)]  # the search, seed 0
    assert sorted(runs[3:]) == [(1e-3, 3), (1e-3, 4), (1e-2, 3), (1e-2, 4)]
    assert best["params"]["reg_weight"] == 1e-2
    assert best["valid"] == pytest.approx(0.25)
    confirmed = sorted(best["confirmed"][k]["mean"] for k in best["confirmed"])
    assert confirmed == pytest.approx([0.17, 0.25])
    assert "the best 2 re-scored by the mean with seeds [3, 4]" in best["selected_on"]
    saved = json.loads((out / "confirm.json").read_text())
    assert sorted(v for d in saved.values() for v in d.values()) == [0.10, 0.11, 0.24, 0.26]
    # A second call runs nothing again; without --confirm-top the search's own pick returns.
    runs.clear()
    assert _tune(mf, "mf", *argv)["params"]["reg_weight"] == 1e-2 and runs == []
    assert _tune(mf, "mf", *argv[:5])["params"]["reg_weight"] == 1e-3 and runs == []
    capsys.readouterr()
    for extra, match in [
        (["--confirm-top", "2"], "--confirm-top and --confirm-seeds go together"),
        (["--confirm-top", "2", "--confirm-seeds", "0,3"], "--confirm-seeds [0] already"),
        (["--confirm-top", "-1", "--confirm-seeds", "3"], "--confirm-top must be >= 0"),
    ]:
        with pytest.raises(SystemExit):
            _tune(mf, "mf", *argv[:5], *extra)
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and match in err, err


def test_confirm_top_never_reads_the_test_split(tmp_path, monkeypatch):
    splits = record_evaluated_splits(monkeypatch)
    out = tmp_path / "mf"
    best = _tune(mf, "mf", "--space", "reg_weight=1e-3,1e-1", "--out", str(out),
                 "--confirm-top", "1", "--confirm-seeds", "5", "--seeds", "0")  # fmt: skip
    # 2 trials + 1 confirmation run, 2 epochs of validation each; then one seed's test.
    assert splits[:6] == ["valid"] * 6 and splits.count("test") == 1 and splits[-1] == "test"
    (trial,) = best["confirmed"]
    assert set(best["confirmed"][trial]["confirm"]) == {"5"}


def test_confirm_top_runs_in_worker_processes(tmp_path):
    out = tmp_path / "mf"
    best = _tune(mf, "mf", "--space", "reg_weight=1e-3,1e-1", "--out", str(out), "--jobs", "2",
                 "--confirm-top", "2", "--confirm-seeds", "3")  # fmt: skip
    saved = json.loads((out / "confirm.json").read_text())
    assert sorted(saved) == sorted(best["confirmed"]) and len(saved) == 2
    for trial, scores in best["confirmed"].items():
        assert scores["confirm"] == saved[trial]
        assert scores["mean"] == pytest.approx((scores["search"][0] + saved[trial]["3"]) / 2)


def test_tpe_search_starts_from_the_commands_own_values(tmp_path, monkeypatch):
    from types import SimpleNamespace

    seen = []

    def fake_fit(ctx, args, on_epoch_end=None, on_resume=None):
        seen.append(args.reg_weight)
        return SimpleNamespace(best_valid={"recall@20": 0.1}, seconds_per_epoch=0.0)

    monkeypatch.setattr(tune_module, "fit", fake_fit)
    # mf's default reg_weight 1.0 lies in the range: it is trial 0, then TPE samples.
    _tune(mf, "mf", "--space", "reg_weight=1e-2:2:log", "--trials", "3",
          "--out", str(tmp_path / "in"))  # fmt: skip
    assert seen[0] == 1.0 and len(seen) == 3 and len(set(seen)) == 3
    # A value given on the command line is the start; one outside the range is not tried.
    seen.clear()
    _tune(mf, "mf", "--space", "reg_weight=1e-2:2:log", "--trials", "2", "--reg-weight", "0.05",
          "--out", str(tmp_path / "flag"))  # fmt: skip
    assert seen[0] == 0.05
    seen.clear()
    _tune(mf, "mf", "--space", "reg_weight=1e-4:1e-2:log", "--trials", "2",
          "--out", str(tmp_path / "out"))  # fmt: skip
    assert all(1e-4 <= w <= 1e-2 for w in seen) and 1.0 not in seen
    # Nothing is queued again when the search resumes, and its sampler does not draw again
    # the points of the command before it (same seeds: its start-up draws did repeat them).
    first = _rows_values(tmp_path / "in")
    seen.clear()
    _tune(mf, "mf", "--space", "reg_weight=1e-2:2:log", "--trials", "5",
          "--out", str(tmp_path / "in"))  # fmt: skip
    assert len(seen) == 2 and not set(seen) & set(first) and len(set(seen)) == 2


def test_start_point_keeps_the_values_inside_the_space():
    from argparse import Namespace

    space = {"lr": Range(1e-4, 1e-2, log=True), "layers": Range(1, 4, integer=True),
             "reg_form": ["norm", "squared"], "dim": Range(8, 64, integer=True)}  # fmt: skip
    args = Namespace(lr=1e-3, layers=2, reg_form="none", dim=100)
    assert tune_module.start_point(space, args) == {"lr": 1e-3, "layers": 2}
    assert tune_module.start_point(space, Namespace(lr=True, layers=2.5)) == {}


def _torch_threads(_: int) -> int:
    import torch

    return torch.get_num_threads()


def test_seed_and_confirm_pools_share_out_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(tune_module.os, "cpu_count", lambda: 6)
    assert tune_module._threads_per_job(2) == 3 and tune_module._threads_per_job(8) == 1
    with tune_module._pool(2) as pool:  # each process gets its share: 6 cores / 2 jobs
        assert list(pool.map(_torch_threads, range(2))) == [3, 3]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert tune_module._threads_per_job(2) is None  # the user's setting wins


# ---- interrupted runs continue from their saved state ------------------------------------


def _tune_args(module, name, *argv):
    from pyg_multirec.experiment import build_parser

    parser = build_parser(name, module.add_arguments, getattr(module, "DEFAULTS", None))
    args = parser.parse_args(["tune", *FAST, *argv])
    return {k: v for k, v in vars(args).items() if k not in tune_module.TUNE_ONLY}


def _interrupt_at(epoch_to_stop):
    def on_epoch_end(epoch, valid):
        if epoch == epoch_to_stop:
            raise KeyboardInterrupt

    return on_epoch_end


def _recording(original, epochs, stop_at=None):
    """``train_with_args`` that records the epochs it trains (and is Ctrl-C'ed at one)."""

    def train_with_args(*args, **kwargs):
        given = kwargs.get("on_epoch_end")

        def on_epoch_end(epoch, valid):
            epochs.append(epoch)
            if epoch == stop_at:
                raise KeyboardInterrupt
            if given is not None:
                given(epoch, valid)

        return original(*args, **{**kwargs, "on_epoch_end": on_epoch_end})

    return train_with_args


def _trained(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("name", ["mf", "micro"])
def test_interrupted_search_run_continues_exactly_from_its_state(tmp_path, name, two_threads):
    module = mf if name == "mf" else load_example("micro")
    base = _tune_args(module, name, "--epochs", "4")

    def context(out):
        return tune_module._Context(name, module.build, base, {}, str(out), False, 0, 0, 0)

    args = argparse.Namespace(**base)
    clean = tune_module.fit(context(tmp_path / "clean"), args)
    ctx = context(tmp_path / "study")
    state = tune_module.run_state_path(ctx.out, args)
    with pytest.raises(KeyboardInterrupt):
        tune_module.fit(ctx, args, on_epoch_end=_interrupt_at(2))
    assert state.is_file()  # the 2 finished epochs are kept
    restored, ran = [], []
    resumed = tune_module.fit(ctx, args, on_epoch_end=lambda e, v: ran.append(e),
                              on_resume=restored.extend)  # fmt: skip
    assert [row["epoch"] for row in restored] == [1, 2] and ran == [3, 4]
    assert _trained(resumed.history) == _trained(clean.history)  # same losses and metrics
    assert resumed.best_valid == clean.best_valid
    # A finished run's state stays: the same run asked again trains nothing.
    ran.clear()
    again = tune_module.fit(ctx, args, on_epoch_end=lambda e, v: ran.append(e))
    assert ran == [] and again.best_valid == clean.best_valid
    # The state is named by what is trained, not by where: other settings, other file.
    other = argparse.Namespace(**{**base, "reg_weight": 0.5, "data_root": "elsewhere"})
    moved = argparse.Namespace(**{**base, "data_root": "elsewhere", "device": "cpu"})
    assert tune_module.run_state_path(ctx.out, other) != state
    assert tune_module.run_state_path(ctx.out, moved) == state


def test_requeued_trial_resumes_and_the_pruner_sees_its_whole_curve(tmp_path, monkeypatch):
    import pyg_multirec.experiment as experiment

    space = ["--space", "reg_weight=1e-2", "--epochs", "4"]
    clean = _tune(mf, "mf", *space, "--out", str(tmp_path / "clean"))
    original, ran = experiment.train_with_args, []
    out = tmp_path / "study"
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(experiment, "train_with_args", _recording(original, ran, stop_at=3))
        _tune(mf, "mf", *space, "--out", str(out))
    assert len(list((out / tune_module.RUN_STATES_DIR).glob("*.pt"))) == 1
    monkeypatch.setattr(experiment, "train_with_args", _recording(original, ran))
    best = _tune(mf, "mf", *space, "--out", str(out))
    assert ran == [1, 2, 3, 4]  # the requeued trial trained epoch 4 only
    assert best["valid"] == clean["valid"] and best["best_epoch"] == clean["best_epoch"]
    storage = f"sqlite:///{out / DB_FILE}"
    trials = optuna.load_study(study_name=STUDY_NAME, storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert sorted(trials[1].intermediate_values) == [1, 2, 3, 4]  # 1-3 from the first run


def test_trials_queued_again_are_claimed_before_the_grid_points_queued_earlier(tmp_path):
    storage = tune_module._storage(optuna, tmp_path)
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage)
    grid = {"reg_weight": [1e-3, 1e-2, 1e-1]}
    tune_module.enqueue_grid(optuna, study, grid, limit=3)  # trials 0-2, never started
    stopped = study.ask()  # trial 0 starts, then its command is killed
    stopped.suggest_categorical("reg_weight", grid["reg_weight"])
    assert tune_module.requeue_trials(optuna, study) == (1, 0, 0)  # as trial 3
    claimed = [study.ask() for _ in range(3)]
    for trial in claimed:
        trial.suggest_categorical("reg_weight", grid["reg_weight"])
    assert [t.number for t in claimed] == [3, 1, 2]  # the unfinished run first
    assert [t.params["reg_weight"] for t in claimed] == [1e-3, 1e-2, 1e-1]


def test_interrupted_seed_run_continues_and_a_new_configuration_starts_afresh(
    tmp_path, monkeypatch
):
    import pyg_multirec.experiment as experiment

    base = argparse.Namespace(**{**_tune_args(mf, "mf", "--epochs", "3"), "command": "tune"})
    clean = tune_module._config(base, {"reg_weight": 1e-2}, 0, tmp_path / "clean")
    tune_module._train_seed("mf", mf.build, clean)
    original = experiment.train_with_args

    def history(config):
        return json.loads((tmp_path / config / "history.json").read_text())

    for config, reg_weight in [("resumed", 1e-2), ("changed", 1.0)]:
        with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
            patch.setattr(experiment, "train_with_args", _recording(original, [], stop_at=2))
            stale = tune_module._config(base, {"reg_weight": reg_weight}, 0, tmp_path / config)
            tune_module._train_seed("mf", mf.build, stale)
    # Same configuration: continues from last.pt to the clean run's result.
    ran = []
    monkeypatch.setattr(experiment, "train_with_args", _recording(original, ran))
    resumed = tune_module._config(base, {"reg_weight": 1e-2}, 0, tmp_path / "resumed")
    metrics = tune_module._train_seed("mf", mf.build, resumed)
    assert ran == [3]
    assert _trained(history("resumed")) == _trained(history("clean"))
    assert metrics["test"] == json.loads((tmp_path / "clean" / "metrics.json").read_text())["test"]
    # The search has a new best since: its seed run ignores the other configuration's state.
    ran.clear()
    changed = tune_module._config(base, {"reg_weight": 1e-2}, 0, tmp_path / "changed")
    tune_module._train_seed("mf", mf.build, changed)
    assert ran == [1, 2, 3]
    assert _trained(history("changed")) == _trained(history("clean"))


def test_seed_runs_take_over_the_finished_runs_of_the_search_and_confirmation(
    tmp_path, monkeypatch
):
    import pyg_multirec.experiment as experiment

    out = tmp_path / "study"
    states = out / tune_module.RUN_STATES_DIR
    original, ran = experiment.train_with_args, []
    monkeypatch.setattr(experiment, "train_with_args", _recording(original, ran))
    # The search and the confirmation, without seed runs: the best trial's runs stay.
    best = _tune(mf, "mf", "--space", "reg_weight=1e-3,1,0.1", "--epochs", "3", "--out", str(out),
                 "--confirm-top", "2", "--confirm-seeds", "1")  # fmt: skip
    assert len(ran) == 3 * 3 + 2 * 3  # 3 trials, 2 confirmation runs, 3 epochs each
    assert len(list(states.glob("*.pt"))) == 2 * 2  # the 2 best trials' search and confirm runs
    # Seed runs of the winner: seeds 0 and 1 were trained already, seed 2 is new.
    ran.clear()
    best = _tune(mf, "mf", "--space", "reg_weight=1e-3,1,0.1", "--epochs", "3", "--out", str(out),
                 "--confirm-top", "2", "--confirm-seeds", "1", "--seeds", "0,1,2")  # fmt: skip
    assert ran == [1, 2, 3]  # seed 2 only
    assert not list(states.glob("*"))  # every kept state served or was removed
    base = argparse.Namespace(**{**_tune_args(mf, "mf", "--epochs", "3"), "command": "tune"})
    for seed in (0, 1):
        clean = tune_module._config(base, best["params"], seed, tmp_path / f"clean{seed}")
        expected = tune_module._train_seed("mf", mf.build, clean)
        taken = best["seeds"][str(seed)]
        assert taken["test"] == expected["test"] and taken["best_epoch"] == expected["best_epoch"]
        history = json.loads((out / "seeds" / f"s{seed}" / "history.json").read_text())
        assert _trained(history) == _trained(expected["history"])


def test_confirm_top_beyond_the_completed_trials_says_so(tmp_path, capsys):
    best = _tune(mf, "mf", "--space", "reg_weight=1e-3,1e-1", "--out", str(tmp_path / "mf"),
                 "--confirm-top", "3", "--confirm-seeds", "1")  # fmt: skip
    assert "--confirm-top 3: only 2 configuration(s) completed" in capsys.readouterr().out
    assert "the best 2 re-scored" in best["selected_on"] and len(best["confirmed"]) == 2


def test_only_the_best_finished_trials_keep_their_run_states(tmp_path):
    from types import SimpleNamespace

    base = _tune_args(mf, "mf")
    ctx = tune_module._Context("mf", mf.build, base, {}, str(tmp_path), False, 0, 0, 0,
                               search_seeds=(0, 1), keep_states=2, confirm_seeds=(5,))  # fmt: skip

    def trial(number, value, state="COMPLETE"):
        return SimpleNamespace(number=number, value=value, state=SimpleNamespace(name=state),
                               params={"reg_weight": 10.0**-number})  # fmt: skip

    trials = [trial(0, 0.2), trial(1, 0.4), trial(2, 0.3), trial(3, None, "RUNNING")]
    # The search's runs (seeds 0, 1) and the confirmation's (seed 5) of each trial.
    paths = {t.number: tune_module._state_paths(ctx, [t], (0, 1, 5)) for t in trials}
    for path in sum(paths.values(), []):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    kept = tune_module._keep_best_states(ctx, trials)
    assert [t.number for t in kept] == [1, 2]
    assert [p.exists() for p in paths[0]] == [False] * 3  # outside the best 2
    assert all(p.exists() for n in (1, 2, 3) for p in paths[n])  # best, or still running


def test_confirmation_counts_each_configuration_once(tmp_path, monkeypatch):
    """A resumed search may hold one configuration twice: the best 3 to confirm (and to
    keep run states for) are 3 distinct configurations, each its best trial."""
    from types import SimpleNamespace

    def trial(number, value, weight):
        return SimpleNamespace(number=number, value=value, state=SimpleNamespace(name="COMPLETE"),
                               params={"reg_weight": weight}, user_attrs={})  # fmt: skip

    trials = [trial(0, 0.3, 0.1), trial(1, 0.2, 0.5), trial(2, 0.3, 0.1), trial(3, 0.1, 1.0)]
    assert [t.number for t in tune_module.best_distinct(trials, 3)] == [0, 1, 3]
    confirmed = []

    def fake_confirm_run(ctx, params, seed):
        confirmed.append((params["reg_weight"], seed))
        return 0.2

    monkeypatch.setattr(tune_module, "_confirm_run", fake_confirm_run)
    ctx = SimpleNamespace(out=str(tmp_path))
    best, scores = tune_module.confirm_best(ctx, trials, 3, (1,))
    assert sorted(confirmed) == [(0.1, 1), (0.5, 1), (1.0, 1)] and sorted(scores) == [0, 1, 3]
    assert best.number == 0  # mean (0.3 + 0.2) / 2 beats (0.2 + 0.2) / 2 and (0.1 + 0.2) / 2
    # The trials tables show the later copy as repeated.
    study = optuna.create_study(direction="maximize")
    weight = optuna.distributions.FloatDistribution(1e-3, 10.0, log=True)
    for t in trials:
        made = optuna.trial.create_trial(
            params=t.params, value=t.value, distributions={"reg_weight": weight}
        )
        study.add_trial(made)
    states = [r["state"] for r in tune_module.trial_rows(study, ["reg_weight"])]
    assert states == ["complete", "complete", tune_module.REPEATED, "complete"]


def test_trials_with_the_same_curve_name_the_parameters_without_effect(tmp_path, capsys,
                                                                       monkeypatch):  # fmt: skip
    from types import SimpleNamespace

    def fake_fit(ctx, args, on_epoch_end=None, on_resume=None):
        # the curve depends on the layer count only: reg_weight has no effect
        for epoch in (1, 2):
            on_epoch_end(epoch, {"recall@20": 0.1 * args.layers + 0.01 * epoch})
        return SimpleNamespace(best_valid={"recall@20": 0.1 * args.layers + 0.02},
                               best_epoch=2, epochs=2, seconds_per_epoch=0.0)  # fmt: skip

    monkeypatch.setattr(tune_module, "fit", fake_fit)
    _tune(lightgcn, "lightgcn", "--space", "layers=1,2", "--space", "reg_weight=1e-4,1e-5",
          "--no-prune", "--out", str(tmp_path / "t"))  # fmt: skip
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 2 and all(" differ in reg_weight but gave the same" in n for n in notes)
    storage = f"sqlite:///{tmp_path / 't' / DB_FILE}"
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    groups = tune_module.same_curves(study.get_trials())
    by_layers = sorted(sorted(study.trials[n].params["layers"] for n in numbers)
                       for numbers, _ in groups)  # fmt: skip
    assert by_layers == [[1, 1], [2, 2]] and all(d == ["reg_weight"] for _, d in groups)


def test_two_workers_never_claim_the_same_queued_trial(tmp_path, monkeypatch):
    import threading
    import time

    from optuna.storages import RDBStorage

    # Widen the window between a claim's read of the trial and its write, as a busy
    # machine does now and then: without the claim lock both claims of the one queued
    # trial would succeed.
    check = RDBStorage.check_trial_is_updatable

    def slow_check(self, trial_id, state):
        time.sleep(0.3)
        return check(self, trial_id, state)

    monkeypatch.setattr(RDBStorage, "check_trial_is_updatable", slow_check)
    study = optuna.create_study(study_name=STUDY_NAME,
                                storage=tune_module._storage(optuna, tmp_path))  # fmt: skip
    study.enqueue_trial({"x": 1.0})
    trial_id = study.trials[0]._trial_id
    claims = []

    def claim():
        storage = tune_module._storage(optuna, tmp_path)  # one per worker, as in _worker
        claims.append(storage.set_trial_state_values(trial_id, optuna.trial.TrialState.RUNNING))

    workers = [threading.Thread(target=claim) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(claims) == [False, True]


def test_reproduce_status_says_where_each_row_stands(tmp_path, capsys):
    import fcntl

    rr = load_example("reproduce_results")
    runs = tmp_path / "runs"
    warm = runs / "ml100k" / "warm"
    (warm / "mf-bpr").mkdir(parents=True)
    (warm / "mf-bpr" / "best.json").write_text(json.dumps(_fake_best([0.1, 0.11, 0.12], {})))
    out = warm / "lightgcn"
    best = _tune(lightgcn, "lightgcn", "--space", "reg_weight=1e-3", "--space", "layers=1",
                 "--out", str(out))  # fmt: skip
    storage = f"sqlite:///{out / DB_FILE}"
    optuna.load_study(study_name=STUDY_NAME, storage=storage).ask()  # left running

    def status(label):
        rr.main(["--status", "--runs", str(runs), "--report", str(tmp_path / "results.md")])
        lines = capsys.readouterr().out.splitlines()
        return next(line for line in lines if line.startswith(f"ml100k warm {label}:"))

    assert status("MF-BPR").endswith("done: test R@20 0.1100 ± 0.0100 over 3 seeds")
    assert status("VBPR").endswith(": not started")
    line = status("LightGCN")
    assert line.startswith("ml100k warm LightGCN: search (stopped): 1 complete, 1 interrupted;")
    assert f"best valid R@20 {best['valid']:.4f} (trial 0); seeds 0/3" in line
    with open(out / tune_module.LOCK_FILE, "w") as handle:  # a tune command at work
        fcntl.flock(handle, fcntl.LOCK_EX)
        line = status("LightGCN")
    assert "search (running now): 1 complete, 1 running; epochs of the running: 0;" in line
    assert not (tmp_path / "results.md").exists()  # --status writes nothing


def test_reproduce_snapshot_keeps_the_unfinished_rows_studies(tmp_path, capsys):
    """--snapshot copies an unfinished row's study (finished and interrupted trials alike)
    and its trials table, removes a finished row's old copy, keeps the copy of a row not
    started here, and trains nothing; the copy goes on where the search stopped."""
    rr = load_example("reproduce_results")
    runs, snap = tmp_path / "runs", tmp_path / "snap"
    warm = runs / "ml100k" / "warm"
    (warm / "mf-bpr").mkdir(parents=True)
    (warm / "mf-bpr" / "best.json").write_text(json.dumps(_fake_best([0.1, 0.11, 0.12], {})))
    out = warm / "lightgcn"
    _tune(lightgcn, "lightgcn", "--space", "reg_weight=1e-3,1e-2", "--space", "layers=1",
          "--trials", "1", "--out", str(out))  # fmt: skip
    optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / DB_FILE}").ask()
    old = snap / "ml100k" / "warm"
    for row in ("mf-bpr", "vbpr", "lightgcn"):  # copies from an earlier snapshot
        (old / row).mkdir(parents=True)
        (old / row / DB_FILE).write_text("old")  # lightgcn's, not a study, is replaced
    rr.main(["--snapshot", str(snap), "--runs", str(runs), "--report", str(tmp_path / "r.md")])
    lines = capsys.readouterr().out.splitlines()
    assert "ml100k warm MF-BPR: finished: snapshot removed" in lines
    assert "ml100k warm VBPR: not started here" in lines
    assert f"ml100k warm LightGCN: study copied to {old / 'lightgcn'}" in lines
    assert not (old / "mf-bpr").exists() and (old / "vbpr" / DB_FILE).read_text() == "old"
    assert sorted(p.name for p in (old / "lightgcn").iterdir()) == [DB_FILE, "trials.md"]
    assert not (tmp_path / "r.md").exists()
    with pytest.raises(SystemExit):  # the runs folder itself: its finished rows would go
        rr.main(["--snapshot", str(runs), "--runs", str(runs)])
    assert "is the --runs folder itself" in capsys.readouterr().err
    assert (warm / "mf-bpr" / "best.json").is_file()
    copied = optuna.load_study(study_name=STUDY_NAME,
                               storage=f"sqlite:///{old / 'lightgcn' / DB_FILE}")  # fmt: skip
    states = sorted(t.state.name for t in copied.get_trials())
    assert states == ["COMPLETE", "RUNNING"]
    # Taken again with nothing new, the copy is left as it is.
    before = (old / "lightgcn" / DB_FILE).stat().st_mtime_ns
    rr.main(["--snapshot", str(snap), "--runs", str(runs), "--report", str(tmp_path / "r.md")])
    assert f"ml100k warm LightGCN: study unchanged in {old / 'lightgcn'}" in capsys.readouterr().out
    assert (old / "lightgcn" / DB_FILE).stat().st_mtime_ns == before
    assert sorted(p.name for p in (old / "lightgcn").iterdir()) == [DB_FILE, "trials.md"]
    # The copy, put back on a "new machine", runs the interrupted trial, not the finished one.
    moved = tmp_path / "new" / "lightgcn"
    shutil.copytree(old / "lightgcn", moved)
    _tune(lightgcn, "lightgcn", "--space", "reg_weight=1e-3,1e-2", "--space", "layers=1",
          "--out", str(moved))  # fmt: skip
    done = {r["reg_weight"]: r["trial"] for r in _rows(moved) if r["state"] == "complete"}
    assert done == {"0.001": "0", "0.01": "2"}  # trial 0 kept, the other grid point run
    out_text = capsys.readouterr().out
    assert "1 trial(s) interrupted earlier: queued again" in out_text
    assert "1 done, 1 to run" in out_text and "trial 0 complete" not in out_text


def test_retry_failed_runs_again_the_trials_an_error_failed(tmp_path, capsys):
    out = tmp_path / "mf"
    space = ["--space", "reg_weight=1e-3,1e-1", "--space", "lr=0.001", "--out", str(out)]

    def broken_build(data, args):  # an error of the machine, not of the configuration
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(BaseException, match="out of memory"):
        run_example("mf", broken_build, mf.add_arguments, mf.DEFAULTS, argv=["tune", *FAST, *space],
                    search_space=mf.SEARCH_SPACE)  # fmt: skip
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / DB_FILE}")
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    _tune(mf, "mf", *space)  # without the flag the failed point counts as covered
    assert [r["state"] for r in _rows(out)] == ["fail", "complete"]
    capsys.readouterr()
    _tune(mf, "mf", *space, "--retry-failed")
    assert "1 trial(s) failed earlier: queued again (--retry-failed)" in capsys.readouterr().out
    rows = _rows(out)
    assert [r["state"] for r in rows] == [tune_module.SUPERSEDED, "complete", "complete"]
    assert rows[0]["reg_weight"] == rows[2]["reg_weight"]  # the same point, now trained
    assert int(rows[2]["epochs"]) == 2
    _tune(mf, "mf", *space, "--retry-failed")  # nothing failed is left: nothing runs again
    assert len(_rows(out)) == 3


def test_no_prune_runs_again_in_full_the_trials_an_earlier_command_pruned(tmp_path, capsys):
    out = tmp_path / "mf"
    space = ["--space", "reg_weight=1e-3,1e-1", "--out", str(out)]
    _tune(mf, "mf", *space, "--trials", "1")
    storage = f"sqlite:///{out / DB_FILE}"
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    grid = {"reg_weight": [1e-3, 1e-1], "reg_form": ["norm"], "lr": [1e-3]}
    study.enqueue_trial({"reg_weight": 1e-1, "reg_form": "norm", "lr": 1e-3})
    pruned = study.ask()
    for name, values in grid.items():
        pruned.suggest_categorical(name, values)
    pruned.report(0.01, 1)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)

    _tune(mf, "mf", *space)  # pruning on: the pruned point counts as done
    assert [r["state"] for r in _rows(out)] == ["complete", "pruned"]
    capsys.readouterr()
    best = _tune(mf, "mf", *space, "--no-prune")
    assert "1 trial(s) pruned earlier: queued again" in capsys.readouterr().out
    rows = _rows(out)
    assert [r["state"] for r in rows] == ["complete", tune_module.SUPERSEDED, "complete"]
    assert float(rows[2]["reg_weight"]) == 1e-1 and int(rows[2]["epochs"]) == 2  # in full
    assert best["trials"] == {"complete": 2, tune_module.SUPERSEDED: 1}
    _tune(mf, "mf", *space, "--no-prune")  # nothing is run twice
    assert len(_rows(out)) == 3
