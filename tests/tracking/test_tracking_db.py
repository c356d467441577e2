"""``--tracking-db``: with a tracking server, per-epoch metrics go straight into the server's
own database once it is shown to hold the server's experiment, and through the server
otherwise. Either way every value is readable through the server's REST API."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mlflow import MlflowClient

from sweeps.cli import run
from sweeps.training.stats import EPOCH_METRICS
from tests.servers import MlflowServer

EPOCHS = 40


def _sweep(server: MlflowServer, tracking_db: str, study: str, where: Path) -> None:
    code = run.main(["--study", study, "--n-trials", "2", "--epochs", str(EPOCHS),
                     "--optimizers", "adam", "--schedulers", "none", "--pruner", "none",
                     "--no-plots", "--storage", f"sqlite:///{where}/optuna.db",
                     "--tracking-uri", server.url, "--tracking-db", tracking_db])
    assert code == 0


def _assert_every_value_through_the_server(server: MlflowServer, study: str) -> None:
    client = MlflowClient(tracking_uri=server.url)  # the REST API
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        for name in EPOCH_METRICS:
            steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, name))
            assert steps == list(range(EPOCHS)), name


def test_metrics_go_straight_into_the_servers_own_database(
        mlflow_server: MlflowServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert mlflow_server.base_dir is not None
    database = f"sqlite:///{mlflow_server.base_dir / 'mlflow.db'}"
    with caplog.at_level(logging.INFO, logger="tracking.study_run"):
        _sweep(mlflow_server, database, "direct-db", tmp_path)
    said = [r.getMessage() for r in caplog.records if r.name == "tracking.study_run"]
    assert said == ["per-epoch metrics are written straight into the tracking server's "
                    f"database {database}"]
    _assert_every_value_through_the_server(mlflow_server, "direct-db")


def test_another_database_is_refused_and_the_metrics_go_through_the_server(
        mlflow_server: MlflowServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    MlflowClient(tracking_uri=other).search_experiments()  # an MLflow database, not the server's
    with caplog.at_level(logging.INFO, logger="tracking.study_run"):
        _sweep(mlflow_server, other, "other-db", tmp_path)
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "tracking.study_run" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"tracking-db {other} does not hold the tracking server's "
                                  "experiment")
    _assert_every_value_through_the_server(mlflow_server, "other-db")
    client = MlflowClient(tracking_uri=other)
    assert client.get_experiment_by_name("other-db") is None  # nothing written there
