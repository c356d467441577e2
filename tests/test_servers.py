"""Smoke tests proving the server fixtures are real PostgreSQL / MLflow servers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import mlflow
import optuna
from mlflow.entities import Metric

try:
    from servers import MlflowServer, PostgresCluster
except ImportError:  # pragma: no cover
    from tests.servers import MlflowServer, PostgresCluster


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_optuna_rdb_storage_on_postgres(postgres: PostgresCluster) -> None:
    url = postgres.create_database(_unique("optuna"))
    assert url.startswith("postgresql+psycopg2://postgres@127.0.0.1:")

    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name="smoke")
    study.optimize(lambda trial: trial.suggest_float("x", -1.0, 1.0) ** 2, n_trials=3)
    storage.remove_session()
    storage.engine.dispose()

    fresh = optuna.storages.RDBStorage(url)
    try:
        reloaded = optuna.load_study(study_name="smoke", storage=fresh)
        complete = reloaded.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        assert len(complete) == 3
        assert all(-1.0 <= t.params["x"] <= 1.0 for t in complete)
    finally:
        fresh.remove_session()
        fresh.engine.dispose()


def _tracking_roundtrip(tracking_uri: str) -> None:
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment(_unique("smoke"))
    run_id = client.create_run(experiment_id).info.run_id

    now_ms = int(time.time() * 1000)
    expected = [(step, 1.0 / (step + 1)) for step in range(5)]
    client.log_batch(
        run_id,
        metrics=[Metric("loss", value, now_ms + step, step) for step, value in expected],
    )
    client.log_text(run_id, "hello", "notes/hello.txt")  # proxied artifact store
    client.set_terminated(run_id)

    history = client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == expected
    assert [a.path for a in client.list_artifacts(run_id, "notes")] == ["notes/hello.txt"]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_mlflow_server_sqlite(mlflow_server: MlflowServer) -> None:
    assert mlflow_server.url.startswith("http://127.0.0.1:")
    _tracking_roundtrip(mlflow_server.url)


def test_mlflow_server_on_postgres(
    postgres: PostgresCluster, make_mlflow_server: Callable[[str], MlflowServer]
) -> None:
    server = make_mlflow_server(postgres.create_database(_unique("mlflow")))
    _tracking_roundtrip(server.url)
