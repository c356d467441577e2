"""The data-set example runs end to end through the sweep command, optimising its validation
accuracy."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from sweeps.cli import run
from sweeps.study.results import RUN_ID_ATTR

EPOCHS = 3


def test_a_sweep_maximises_the_examples_validation_accuracy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage, tracking = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    assert run.main(["--objective", "examples.dataset_objective:objective",
                     "--metric", "val_accuracy", "--direction", "maximize",
                     "--n-trials", "3", "--epochs", str(EPOCHS), "--study", "rings",
                     "--optimizers", "adam", "--lr-min", "0.003", "--lr-max", "0.03",
                     "--pruner", "none",
                     "--storage", storage, "--tracking-uri", tracking,
                     "--quiet", "--no-plots"]) == 0

    study = optuna.load_study(study_name="rings", storage=storage)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 3
    client = MlflowClient(tracking_uri=tracking)
    for trial in trials:
        run_id = trial.user_attrs[RUN_ID_ATTR]
        for metric in ("val_loss", "val_accuracy", "loss"):
            history = client.get_metric_history(run_id, metric)
            assert sorted(m.step for m in history) == list(range(EPOCHS)), metric
        last = max(client.get_metric_history(run_id, "val_accuracy"), key=lambda m: m.step)
        assert trial.value == pytest.approx(last.value)
    assert study.best_value == max(t.value for t in trials)
    assert study.best_value > 0.5  # three classes: chance is 1/3
