"""A short sweep of the real-data objectives: the best trial by validation loss classifies the
held-out test split far better than the initial network."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from mlflow import MlflowClient

import objectives
from sweeps.cli import run
from sweeps.study.results import RUN_ID_ATTR

EPOCHS = 4


@pytest.mark.parametrize("spec", ["digits", "digits-cnn"])
def test_a_short_digits_sweep_beats_the_initial_test_accuracy(
        spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage, tracking = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    assert run.main(["--objective", spec, "--objective-arg", "batch_size=128",
                     "--n-trials", "4", "--epochs", str(EPOCHS), "--study", "digits",
                     "--optimizers", "adam,rmsprop", "--storage", storage,
                     "--tracking-uri", tracking, "--quiet", "--no-plots"]) == 0
    digits = objectives.build(spec, {"batch_size": "128"})
    initial = digits.evaluate(digits.init_params(torch.device("cpu")))["test_accuracy"]
    study = optuna.load_study(study_name="digits", storage=storage)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    client = MlflowClient(tracking_uri=tracking)
    run_id = study.best_trial.user_attrs[RUN_ID_ATTR]
    val_loss = client.get_metric_history(run_id, "val_loss")
    assert len(val_loss) == EPOCHS
    assert study.best_value == pytest.approx(max(val_loss, key=lambda m: m.step).value)
    metrics = client.get_run(run_id).data.metrics
    assert initial < 0.3
    assert metrics["test_accuracy"] > initial + 0.5
    assert 0.0 <= metrics["train_accuracy"] <= 1.0
