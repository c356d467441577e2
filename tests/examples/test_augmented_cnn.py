"""The augmented-CNN example runs end to end through the sweep command: a CNN trained from a
``DataLoader`` with random augmentation, its validation accuracy maximised, its test accuracy
logged."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from sweeps.cli import run
from sweeps.study.results import RUN_ID_ATTR

EPOCHS = 2


def test_a_sweep_of_the_augmented_cnn_learns_the_digits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage, tracking = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    assert run.main(["--objective", "examples.augmented_cnn:objective",
                     "--metric", "val_accuracy", "--direction", "maximize",
                     "--n-trials", "3", "--epochs", str(EPOCHS), "--study", "cnn",
                     "--optimizers", "adam", "--lr-min", "0.003", "--lr-max", "0.03",
                     "--pruner", "none", "--storage", storage, "--tracking-uri", tracking,
                     "--quiet", "--no-plots"]) == 0

    study = optuna.load_study(study_name="cnn", storage=storage)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 3
    client = MlflowClient(tracking_uri=tracking)
    for trial in trials:
        metrics = client.get_run(trial.user_attrs[RUN_ID_ATTR]).data.metrics
        assert metrics["val_accuracy"] == pytest.approx(trial.value)
        assert metrics["test_accuracy"] > 0.5  # ten classes: chance is 1/10
    assert study.best_value > 0.8
