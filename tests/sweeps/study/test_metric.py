"""The study optimises the metric the user names: its values, the pruner's intermediate
values, the best trial, the export and the comparison all follow it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient

from sweeps.cli import compare, export, run
from sweeps.errors import UsageError
from sweeps.study.metric import StudyMetric, study_metric
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from sweeps.training.stats import EPOCH_METRICS

try:
    from minibatch_objectives import tiny
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import tiny

OBJECTIVE = "tests.minibatch_objectives:tiny"
EPOCHS = 5
REPORTED = (*EPOCH_METRICS, "val_loss", "val_accuracy")


# ------------------------------------------------------------------------ choosing a metric

def test_defaults_are_the_validation_loss_where_there_is_one_else_the_training_loss() -> None:
    assert study_metric(None, None, "last", REPORTED) == StudyMetric("val_loss", "minimize")
    assert study_metric(None, None, "last", EPOCH_METRICS) == StudyMetric("loss", "minimize")


def test_an_accuracy_is_maximised_unless_told_otherwise() -> None:
    assert study_metric("val_accuracy", None, "last", REPORTED).direction == "maximize"
    assert study_metric("val_accuracy", "minimize", "best", REPORTED) == \
        StudyMetric("val_accuracy", "minimize", "best")


@pytest.mark.parametrize(("name", "direction", "at", "field"), [
    ("test_accuracy", None, "last", "metric"),  # scored once at the end: not a study metric
    ("val_f1", None, "last", "metric"),
    ("val_loss", "up", "last", "direction"),
    ("val_loss", None, "first", "metric-at"),
])
def test_an_unknown_choice_names_the_field_and_what_is_allowed(
        name: str, direction: str | None, at: str, field: str) -> None:
    with pytest.raises(UsageError) as caught:
        study_metric(name, direction, at, REPORTED)
    assert caught.value.field == field


def test_a_value_is_read_at_the_last_or_the_best_epoch() -> None:
    result = train(tiny(), Hyperparams("adam", 0.05), EPOCHS)
    accuracy = result.history.metric("val_accuracy")
    loss = result.history.metric("val_loss")
    assert StudyMetric("val_accuracy", "maximize").value(result) == accuracy[-1]
    assert StudyMetric("val_accuracy", "maximize", "best").value(result) == accuracy.max()
    assert StudyMetric("val_loss", "minimize", "best").value(result) == loss.min()
    assert StudyMetric().value(result) == result.final_loss
    assert StudyMetric(at="best").value(result) == result.best_loss


# ------------------------------------------------------------------- a sweep that maximises

@pytest.fixture(scope="module")
def maximised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep of 6 trials maximising the validation accuracy, in its own folder."""
    where = tmp_path_factory.mktemp("maximised")
    code = run.main([
        "--objective", OBJECTIVE, "--study", "acc", "--n-trials", "6", "--epochs", str(EPOCHS),
        "--metric", "val_accuracy", "--direction", "maximize", "--optimizers", "sgd,adam",
        "--schedulers", "none", "--lr-min", "1e-3", "--lr-max", "1", "--sampler", "random",
        "--pruner", "none", "--seed", "3", "--quiet", "--no-plots",
        "--storage", f"sqlite:///{where}/optuna.db",
        "--tracking-uri", f"sqlite:///{where}/mlflow.db",
        "--export", str(where / "best.json")])
    assert code == 0
    return where


def _study(where: Path) -> optuna.Study:
    return optuna.load_study(study_name="acc", storage=f"sqlite:///{where}/optuna.db")


def test_each_value_is_the_trials_last_validation_accuracy_in_mlflow(maximised: Path) -> None:
    study = _study(maximised)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    client = MlflowClient(tracking_uri=f"sqlite:///{maximised}/mlflow.db")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6
    for trial in complete:
        history = client.get_metric_history(trial.user_attrs["mlflow_run_id"], "val_accuracy")
        by_step = {m.step: m.value for m in history}
        assert trial.value == by_step[EPOCHS - 1]
        # the pruner heard the same metric: each intermediate value is that epoch's accuracy
        for step, value in trial.intermediate_values.items():
            assert value == by_step[step]
    values = [t.value for t in complete]
    assert len(set(values)) > 1, "the trials must differ for the test to mean anything"


def test_the_highest_accuracy_is_the_best_trial_exported_and_compared_first(
        maximised: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = _study(maximised)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    top = max(complete, key=lambda t: (t.value, -t.number))
    assert study.best_trial.number == top.number
    document = json.loads((maximised / "best.json").read_text())
    assert (document["trial"], document["value"]) == (top.number, top.value)
    assert document["metric"] == {"name": "val_accuracy", "direction": "maximize", "at": "last"}

    assert export.main(["--study", "acc", "--storage", f"sqlite:///{maximised}/optuna.db",
                        "--top", "3", "--out", str(maximised / "top.json")]) == 0
    exported = json.loads((maximised / "top.json").read_text())
    values = [d["value"] for d in exported["trials"]]
    assert values == sorted(values, reverse=True) and values[0] == top.value

    capsys.readouterr()
    assert compare.main(["--study", "acc", "--storage",
                         f"sqlite:///{maximised}/optuna.db"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "value: val_accuracy at the last epoch (maximize)"
    assert out[2].split()[0] == str(top.number)  # the first row after the header


def test_resuming_with_another_metric_is_refused(maximised: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in maximised.iterdir())
    capsys.readouterr()
    code = run.main(["--objective", OBJECTIVE, "--study", "acc", "--n-trials", "7",
                     "--epochs", str(EPOCHS), "--quiet", "--no-plots",
                     "--storage", f"sqlite:///{maximised}/optuna.db",
                     "--tracking-uri", f"sqlite:///{maximised}/mlflow.db"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sweeps.run: error: metric: 'val_loss' is not valid")
    assert "val_accuracy" in err and "\n" not in err
    assert sorted(p.name for p in maximised.iterdir()) == before
    assert len(_study(maximised).trials) == 6


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("argv", "expected"), [
    (["--objective", OBJECTIVE, "--metric", "val_f1"],
     "sweeps.run: error: metric: 'val_f1' is not valid; use one of loss, grad_abs_mean"),
    (["--metric", "val_loss"],
     "sweeps.run: error: metric: 'val_loss' is not valid; use one of loss,"),
    (["--objective", OBJECTIVE, "--direction", "up"],
     "sweeps.run: error: direction: 'up' is not valid; use one or more of minimize, maximize"),
    (["--metric-at", "first"],
     "sweeps.run: error: metric-at: 'first' is not valid; use one of last, best"),
])
def test_a_bad_metric_is_one_line_exit_2_and_writes_nothing(
        argv: list[str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert run.main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(expected), err
    assert list(tmp_path.iterdir()) == []


def test_the_seed_study_still_minimises_its_final_training_loss(tmp_path: Path) -> None:
    code = run.main(["--study", "seed", "--n-trials", "2", "--epochs", "50", "--quiet",
                     "--no-plots", "--storage", f"sqlite:///{tmp_path}/optuna.db",
                     "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    assert code == 0
    study = optuna.load_study(study_name="seed", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    for trial in study.trials:
        assert trial.value == trial.user_attrs["final_loss"]
        assert math.isfinite(trial.value)
    assert np.isfinite(study.best_value)
