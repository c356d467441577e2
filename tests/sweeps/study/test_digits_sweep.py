"""A short default sweep on the real-data objective beats the initial accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

import objectives
from sweeps.cli import run
from sweeps.study.results import load_study


def test_a_short_digits_sweep_improves_the_initial_accuracy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run.main(["--objective", "digits", "--objective-arg", "hidden=16", "--n-trials", "8",
                     "--epochs", "80", "--study", "digits", "--quiet", "--no-plots"]) == 0
    digits = objectives.build("digits", {"hidden": "16"})
    initial = digits.accuracy(digits.init_params(torch.device("cpu")), "test")
    best = load_study("sqlite:///mlruns/optuna.db", "digits").best_trial
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    metrics = client.get_run(best.user_attrs["mlflow_run_id"]).data.metrics
    assert initial < 0.3
    assert metrics["test_accuracy"] > initial + 0.5
    assert 0.0 <= metrics["train_accuracy"] <= 1.0
