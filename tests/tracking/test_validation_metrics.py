"""The validation metrics of mini-batch objectives reach MLflow with step = epoch, on every
write path (direct SQL in a thread, direct SQL in the writer process, ``log_batch``), and
through a whole sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from sweeps.cli import run
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from sweeps.training.stats import EPOCH_METRICS, EpochStats
from tests.tracking.writing import PATHS, Chunks, writer

try:
    from minibatch_objectives import tiny
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import tiny

EXTRA = ("val_loss", "val_accuracy")


@pytest.fixture(scope="module")
def chunks() -> list[EpochStats]:
    observer = Chunks()
    train(tiny(), Hyperparams("sgd", 0.1), 5, observers=(observer,), chunk=2,
          per_tensor=False)  # per-tensor metrics: tests/tracking/test_tensor_metrics.py
    return observer.chunks


@pytest.mark.parametrize("path", PATHS)
def test_validation_metrics_are_logged_at_step_epoch(
        tmp_path: Path, chunks: list[EpochStats], path: str) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("val")).info.run_id
    sending = writer(path, client, uri)
    for chunk in chunks:
        sending.put(run_id, chunk)
    sending.close()
    assert sending.errors == []
    whole = EpochStats.concat(chunks)
    assert whole.names == (*EPOCH_METRICS, *EXTRA)
    for name in whole.names:
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))
        assert [s for s, _ in history] == list(range(5)), name
        np.testing.assert_array_equal([v for _, v in history], whole.metric(name),
                                      err_msg=name)
    latest = client.get_run(run_id).data.metrics
    assert latest["val_loss"] == whole.metric("val_loss")[-1]


def test_a_sweep_of_a_minibatch_objective_logs_validation_per_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = run.main(["--study", "minibatch", "--n-trials", "3", "--epochs", "3",
                     "--objective", "tests.minibatch_objectives:tiny",
                     "--optimizers", "sgd,adam", "--schedulers", "none,onecycle",
                     "--lr-min", "1e-3", "--lr-max", "1e-1", "--sampler", "random",
                     "--pruner", "none", "--seed", "1", "--batch", "3", "--quiet"])
    assert code == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("minibatch")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 3
    for child in children:
        for name in (*EPOCH_METRICS, *EXTRA):
            steps = [m.step for m in client.get_metric_history(child.info.run_id, name)]
            assert sorted(steps) == [0, 1, 2], name
