"""Several metrics (a Pareto front) and constraints, from the rules to a whole sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from sweeps.cli import compare, export, run
from sweeps.errors import UsageError
from sweeps.study.goals import Constraint, Goals, pareto_front, parse_constraint, study_goals
from sweeps.study.metric import StudyMetric
from sweeps.study.results import RUN_ID_ATTR

REPORTED = ("loss", "val_loss", "val_accuracy")


def test_the_front_keeps_exactly_the_points_no_other_dominates() -> None:
    goals = Goals((StudyMetric("val_loss"), StudyMetric("trial_seconds")))
    points = {0: (0.1, 9.0), 1: (0.2, 5.0), 2: (0.3, 5.0), 3: (0.05, 20.0), 4: (0.2, 6.0),
              5: (0.4, 1.0)}
    # 2 is dominated by 1 (same seconds, higher loss), 4 by 1 (both worse)
    assert pareto_front(goals, points) == [3, 0, 1, 5]


def test_a_maximised_metric_turns_dominance_around() -> None:
    goals = Goals((StudyMetric("val_accuracy", "maximize"), StudyMetric("trial_seconds")))
    points = {0: (0.9, 10.0), 1: (0.8, 10.0), 2: (0.95, 30.0)}
    assert pareto_front(goals, points) == [2, 0]


def test_a_constraint_measures_how_far_a_value_breaks_it() -> None:
    at_most = parse_constraint("trial_seconds <= 30", REPORTED + ("trial_seconds",))
    at_least = parse_constraint("val_accuracy>=0.9", REPORTED)
    assert at_most == Constraint("trial_seconds", "<=", 30.0)
    assert (at_most.violation(25.0), at_most.violation(32.0)) == (-5.0, 2.0)
    assert at_least.violation(0.85) == pytest.approx(0.05)
    assert at_least.violation(math.nan) == math.inf
    assert str(at_least) == "val_accuracy>=0.9"


@pytest.mark.parametrize(("names", "directions", "constraints", "field"), [
    (("val_loss", "trial_seconds"), ("minimize",), (), "direction"),
    (("trial_seconds", "val_loss"), None, (), "metric"),
    (("val_loss", "val_f1"), None, (), "metric"),
    (("val_loss",), None, ("val_f1<=1",), "constraint"),
    (("val_loss",), None, ("val_loss < 1",), "constraint"),
])
def test_goals_that_cannot_be_met_are_refused_by_field(
        names: tuple[str, ...], directions: tuple[str, ...] | None,
        constraints: tuple[str, ...], field: str) -> None:
    with pytest.raises(UsageError) as caught:
        study_goals(names, directions, "last", constraints, REPORTED)
    assert caught.value.field == field


def test_directions_default_by_name_and_a_single_metric_stores_as_before() -> None:
    goals = study_goals(("val_accuracy", "trial_seconds"), None, "best", (), REPORTED)
    assert goals.directions == ("maximize", "minimize")
    assert goals.settings()["metric"] == ["val_accuracy", "trial_seconds"]
    single = study_goals(None, None, "last", (), REPORTED)
    assert single.settings() == {"metric": "val_loss", "direction": "minimize",
                                 "metric_at": "last", "constraints": []}


def _sweep(tmp_path: Path, *extra: str, trials: int = 6, study: str = "two") -> list[str]:
    return ["--objective", "digits", "--objective-arg", "batch_size=128", "--epochs", "2",
            "--n-trials", str(trials), "--study", study,
            "--storage", f"sqlite:///{tmp_path}/optuna.db",
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", *extra]


def test_a_two_metric_sweep_shows_exports_and_draws_its_pareto_front(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    goals = ["--metric", "val_loss,trial_seconds"]
    assert run.main(_sweep(tmp_path, *goals)) == 0
    summary = capsys.readouterr().out
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.load_study(study_name="two", storage=storage)
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    # Optuna's own front, best first by validation loss, is the one lrsweep shows
    front = [t.number for t in sorted(study.best_trials, key=lambda t: (t.values[0], t.number))]
    assert front
    table = summary[summary.index("Pareto front"):summary.index("next:")].splitlines()[2:]
    assert [int(line.split()[0]) for line in table if line.strip()] == front[:5]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    for trial in study.trials:  # the told seconds are the ones the run logged
        logged = client.get_run(trial.user_attrs[RUN_ID_ATTR]).data.metrics
        assert logged["trial_seconds"] == pytest.approx(trial.values[1])
        assert logged["trial_epochs"] == 2
    runs = client.search_runs([client.get_experiment_by_name("two").experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parent) == 1
    plots = [a.path for a in client.list_artifacts(parent[0].info.run_id, "plots")]
    assert "plots/pareto_front.png" in plots

    assert export.main(["--study", "two", "--storage", storage, "--out", "best.json"]) == 0
    document = json.loads((tmp_path / "best.json").read_text())
    assert (document["trial"], document["pareto_front"]) == (front[0], front)
    assert list(document["values"]) == ["val_loss", "trial_seconds"]
    last = front[-1]
    assert export.main(["--study", "two", "--storage", storage, "--out", "last.json",
                        "--trial", str(last)]) == 0
    assert json.loads((tmp_path / "last.json").read_text())["trial"] == last

    capsys.readouterr()
    assert compare.main(["--study", "two", "--storage", storage]) == 0
    rows = capsys.readouterr().out.splitlines()
    header = rows[1].split()
    cells = [r.split() for r in rows[2:] if r.split() and r.split()[0].isdigit()]
    on_front = [int(c[0]) for c in cells if c[header.index("pareto")] == "True"]
    assert on_front == front

    # a resume keeps both metrics; other metrics are refused in one line
    assert run.main(_sweep(tmp_path, *goals, "--no-plots", trials=8)) == 0
    study = optuna.load_study(study_name="two", storage=storage)
    assert len(study.directions) == 2 and len(study.trials) == 8
    capsys.readouterr()
    assert run.main(_sweep(tmp_path, "--metric", "val_loss", trials=9)) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("sweeps.run: error: metric: 'val_loss'")


def test_a_constraint_keeps_the_best_infeasible_trial_from_being_chosen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same six trials (one batch, asked before any is told) with and without a bound
    that only the best trial breaks: with it, the second best is exported."""
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    assert run.main(_sweep(tmp_path, "--no-plots", "--quiet", study="free")) == 0
    free = optuna.load_study(study_name="free", storage=storage)
    ranked = sorted(free.get_trials(states=(optuna.trial.TrialState.COMPLETE,)),
                    key=lambda t: t.value)
    best, second = ranked[0], ranked[1]
    bound = (best.value + second.value) / 2  # only the best trial's val_loss lies below it
    assert run.main(_sweep(tmp_path, "--no-plots", "--quiet", "--constraint",
                           f"val_loss>={bound!r}", study="bound")) == 0
    bound_study = optuna.load_study(study_name="bound", storage=storage)
    by_number = {t.number: t for t in bound_study.trials}
    assert by_number[best.number].user_attrs["violation"] > 0
    assert by_number[best.number].state == optuna.trial.TrialState.COMPLETE  # stays in
    assert export.main(["--study", "bound", "--storage", storage, "--out", "best.json"]) == 0
    document = json.loads((tmp_path / "best.json").read_text())
    assert document["trial"] == second.number
    assert bound_study.best_trial.number == second.number  # Optuna knows the constraint too
