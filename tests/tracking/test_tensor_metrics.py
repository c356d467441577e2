"""Per-tensor metrics (names with a '/') reach MLflow with step = epoch on every write path:
direct SQL in a thread, direct SQL in the writer process, ``log_batch``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from sweeps.training.stats import EpochStats
from tests.sweeps.training.tensor_objectives import TENSORS, minibatch
from tests.tracking.writing import PATHS, Chunks, writer
from tracking.plots import tensor_histories, tensor_series

EPOCHS = 5


@pytest.fixture(scope="module")
def chunks() -> list[EpochStats]:
    observer = Chunks()
    train(minibatch(), Hyperparams("adam", 0.05), EPOCHS, observers=(observer,), chunk=2)
    return observer.chunks


@pytest.mark.parametrize("path", PATHS)
def test_per_tensor_metrics_are_logged_at_step_epoch(
        tmp_path: Path, chunks: list[EpochStats], path: str) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("tensors")).info.run_id
    sending = writer(path, client, uri)
    for chunk in chunks:
        sending.put(run_id, chunk)
    sending.close()
    assert sending.errors == []
    whole = EpochStats.concat(chunks)
    assert whole.tensors == TENSORS
    per_tensor = [n for n in whole.names if "/" in n]
    assert len(per_tensor) == 2 * len(TENSORS)
    for name in per_tensor:
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))
        assert [s for s, _ in history] == list(range(EPOCHS)), name
        np.testing.assert_array_equal([v for _, v in history], whole.metric(name),
                                      err_msg=name)
    latest = client.get_run(run_id).data.metrics
    assert latest["update_ratio/0.weight"] == whole.metric("update_ratio/0.weight")[-1]
    read = tensor_series(tensor_histories(client, run_id))  # as the sweep's plot reads them
    assert sorted(read) == sorted(TENSORS)
    np.testing.assert_array_equal(read["2.weight"].values, whole.metric("update_ratio/2.weight"))
