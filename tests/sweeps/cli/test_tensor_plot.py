"""A sweep of an objective of several parameter tensors logs each trial's per-tensor metrics
and, next to the other plots of the parent run, the best trial's update ratio per tensor; a
sweep of ``rebalance`` (one tensor) logs neither. The plots drawn later from MLflow alone
(``write_report``, as ``sweeps.export --plots`` does) have it too."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from objectives import build
from sweeps.cli import run
from sweeps.cli.sweep_plots import write_report
from sweeps.study.results import opened_study
from sweeps.training.stats import EPOCH_METRICS
from tests.sweeps.training.tensor_objectives import NAME, TENSORS
from tracking.plots import FILES, TENSOR_FILE

EPOCHS = 3


def sweep(tmp_path: Path, objective: str, study: str) -> tuple[MlflowClient, Run, list[Run]]:
    """Run a two-trial sweep in ``tmp_path``; the client, the parent run and the children."""
    code = run.main(["--study", study, "--n-trials", "2", "--epochs", str(EPOCHS),
                     "--objective", objective, "--optimizers", "sgd,adam",
                     "--schedulers", "none", "--lr-min", "1e-3", "--lr-max", "1e-1",
                     "--sampler", "random", "--pruner", "none", "--seed", "1", "--batch", "2",
                     "--quiet"])
    assert code == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id])
    parent, = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2
    return client, parent, children


def plot_files(client: MlflowClient, parent: Run) -> list[str]:
    return sorted(Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "plots"))


def test_a_sweep_of_several_tensors_logs_them_and_their_plot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    client, parent, children = sweep(tmp_path, f"{NAME}:FullBatch", "tensors")
    per_tensor = {f"{m}/{t}" for m in ("grad_abs_mean", "update_ratio") for t in TENSORS}
    for child in children:
        assert set(child.data.metrics) >= per_tensor | set(EPOCH_METRICS)
        steps = [m.step for m in client.get_metric_history(child.info.run_id,
                                                           "update_ratio/0.weight")]
        assert sorted(steps) == list(range(EPOCHS))
    assert plot_files(client, parent) == sorted([*FILES, TENSOR_FILE])
    storage = f"sqlite:///{tmp_path}/mlruns/optuna.db"  # the plots again, from MLflow alone
    with opened_study(storage, "tensors") as study:
        paths = write_report(study, storage, client, build(f"{NAME}:FullBatch"), EPOCHS,
                             tmp_path / "report")
    assert [p.name for p in paths] == [*FILES, TENSOR_FILE]


def test_a_sweep_of_rebalance_has_no_tensor_plot_nor_metrics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    client, parent, children = sweep(tmp_path, "rebalance", "seed")
    for child in children:
        assert not [name for name in child.data.metrics if "/" in name]
    assert plot_files(client, parent) == sorted(FILES)
