"""Issue 5, scenario 6: NaN or inf in the loss, NaN only in the gradient, an exception inside
the objective: that trial is FAIL (never COMPLETE) with reason and epoch, its earlier metrics
kept, and the sweep goes on to its target. An objective that cannot produce a first loss
stops the sweep with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from .helpers import (
    NO_PLOTS,
    SEQUENTIAL,
    Processes,
    Runs,
    assert_study_and_runs_agree,
    counted,
    load_trials,
    mlflow_runs,
    one_line,
    sqlite_url,
    tracking_url,
)

QUADRATIC = ["--objective", "tests.toy_objectives:Quadratic", "--optimizers", "sgd",
             "--schedulers", "none", "--pruner", "none", "--no-prune-stalled", "--quiet",
             *NO_PLOTS]  # diverging trials run on to their NaN


def _assert_failure_recorded(trial: FrozenTrial, runs: Runs, reason: str) -> None:
    """FAIL with ``failure``/``failure_epoch`` in Optuna and tags in MLflow; the epochs
    before the failure are all in the run's metric history, the failing one is not."""
    assert trial.state == TrialState.FAIL and trial.value is None
    assert trial.user_attrs["failure"].startswith(reason), trial.user_attrs["failure"]
    epoch = trial.user_attrs["failure_epoch"]
    assert isinstance(epoch, int) and epoch > 0
    run_id = trial.user_attrs["mlflow_run_id"]
    run = runs.client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == trial.user_attrs["failure"]
    assert run.data.tags["failure_epoch"] == str(epoch)
    history = runs.client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(epoch))


@pytest.mark.slow
def test_diverging_trials_fail_with_reason_and_epoch_and_the_sweep_reaches_its_target(
        workdir: Path, processes: Processes) -> None:
    study = ["--study", "nan", "--epochs", "400", *QUADRATIC]
    # SGD on sum(x**2) diverges (inf, then NaN) for lr > 1: every trial of this range fails ...
    diverging = processes.run(workdir, *study, "--lr-min", "10", "--lr-max", "1000",
                              "--n-trials", "3")
    assert diverging.rc == 0, diverging.stderr[-3000:]
    # ... and the same study resumed with a converging range
    converging = processes.run(workdir, *study, "--lr-min", "1e-3", "--lr-max", "0.1",
                               "--n-trials", "5")
    assert converging.rc == 0, converging.stderr[-3000:]

    trials = load_trials(sqlite_url(workdir), "nan")
    assert len(counted(trials)) == len(trials) == 5  # failed trials count towards the target
    assert [t.state.name for t in trials] == ["FAIL"] * 3 + ["COMPLETE"] * 2
    runs = mlflow_runs(tracking_url(workdir), "nan")
    for trial in trials[:3]:
        _assert_failure_recorded(trial, runs, "non-finite loss")
    assert_study_and_runs_agree(trials, runs)


@pytest.mark.parametrize(("mode", "reason"), [("raise", "RuntimeError: objective failed"),
                                               ("nan_grad", "non-finite gradient")])
def test_an_objective_failing_at_epoch_k_fails_that_trial_only(
        mode: str, reason: str, workdir: Path, processes: Processes) -> None:
    done = processes.run(workdir, "--study", "k", "--n-trials", "2", "--epochs", "20",
                         "--objective", "tests.bad_objectives:FailsAt",
                         "--objective-arg", "epoch=5", "--objective-arg", f"mode={mode}",
                         "--optimizers", "sgd", "--schedulers", "none", "--pruner", "none",
                         "--lr-min", "1e-3", "--lr-max", "1e-2", "--quiet", *NO_PLOTS,
                         *SEQUENTIAL)

    assert done.rc == 0, done.stderr[-3000:]
    trials = load_trials(sqlite_url(workdir), "k")
    assert len(counted(trials)) == 2
    runs = mlflow_runs(tracking_url(workdir), "k")
    for trial in trials:
        _assert_failure_recorded(trial, runs, reason)
        assert trial.user_attrs["failure_epoch"] == 5
    assert_study_and_runs_agree(trials, runs)


@pytest.mark.parametrize("intervals", ["auto", "fixed"])
def test_an_objective_that_cannot_start_stops_the_sweep_with_one_clear_line(
        intervals: str, workdir: Path, processes: Processes) -> None:
    """Its range test fails first (it declares no lr intervals: ``auto``), before any trial
    or run; with ``--lr-range fixed`` its first trial does, and neither Optuna nor MLflow is
    left with anything RUNNING."""
    done = processes.run(workdir, "--study", "broken", "--n-trials", "3",
                         "--objective", "tests.bad_objectives:Broken", "--lr-range", intervals,
                         "--optimizers", "adam", "--schedulers", "none", "--quiet", *NO_PLOTS)

    assert done.rc != 0
    line = one_line(done.stderr)
    assert line.startswith("sweeps.run: error: ")
    assert "tests.bad_objectives:Broken" in line and "not implemented" in line
    trials = load_trials(sqlite_url(workdir), "broken")
    client = MlflowClient(tracking_uri=tracking_url(workdir))
    if intervals == "auto":
        assert trials == []
        assert client.get_experiment_by_name("broken") is None
        return
    assert trials and not [t for t in trials if t.state == TrialState.RUNNING]
    runs = mlflow_runs(tracking_url(workdir), "broken")
    assert runs.all and not [r for r in runs.all if r.info.status == "RUNNING"]
