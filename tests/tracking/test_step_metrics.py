"""``log_steps``: every step's loss and learning rate reach MLflow as ``step_loss`` and
``step_lr`` at step = the step's global index, on every write path (direct SQL in a thread,
direct SQL in the writer process, ``log_batch``), thinned by epoch with ``--log-every``; a
sweep and a training run with ``--log-steps`` log them, without it nothing new is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from sweeps.cli import run
from sweeps.cli import train as train_cli
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from sweeps.training.stats import EPOCH_METRICS, STEP_METRICS, EpochStats, StepTrace
from tests.tracking.writing import PATHS, Chunks, writer
from tracking.metrics import MetricWriter
from tracking.sql_metrics import connect

try:
    from minibatch_objectives import tiny
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import tiny

EPOCHS = 5
STEPS = tiny().steps_per_epoch  # 5: 37 rows in batches of 8
TINY = "tests.minibatch_objectives:tiny"


def _chunks(log_steps: bool) -> list[EpochStats]:
    observer = Chunks()
    train(tiny(), Hyperparams("adam", 0.05, "onecycle"), EPOCHS, observers=(observer,),
          chunk=2, per_tensor=False, log_steps=log_steps)
    return observer.chunks


@pytest.fixture(scope="module")
def traced() -> list[EpochStats]:
    return _chunks(True)


def _history(client: MlflowClient, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))


@pytest.mark.parametrize("every", [1, 2])
@pytest.mark.parametrize("path", PATHS)
def test_step_metrics_are_logged_at_the_global_step(
        tmp_path: Path, traced: list[EpochStats], path: str, every: int) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("steps")).info.run_id
    sending = writer(path, client, uri, every)
    for chunk in traced:
        sending.put(run_id, chunk)
    sending.close()
    assert sending.errors == []
    whole = EpochStats.concat(traced)
    trace = whole.trace
    assert trace is not None and len(trace) == EPOCHS * STEPS
    logged = [e for e in range(EPOCHS) if e % every == 0]
    steps = [e * STEPS + i for e in logged for i in range(STEPS)]  # all steps of those epochs
    for name in STEP_METRICS:
        history = _history(client, run_id, name)
        assert [s for s, _ in history] == steps, name
        np.testing.assert_array_equal([v for _, v in history], trace.metric(name)[steps],
                                      err_msg=name)
    for name in EPOCH_METRICS:  # the per-epoch metrics as ever
        assert [s for s, _ in _history(client, run_id, name)] == logged, name
    latest = client.get_run(run_id).data.metrics
    assert latest["step_loss"] == trace.loss[steps[-1]]
    assert latest["step_lr"] == trace.lr[steps[-1]]


@pytest.mark.parametrize("path", PATHS)
def test_nothing_new_is_written_without_a_trace(tmp_path: Path, path: str) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("no-steps")).info.run_id
    sending = writer(path, client, uri)
    for chunk in _chunks(False):
        sending.put(run_id, chunk)
    sending.close()
    assert sending.errors == []
    assert set(client.get_run(run_id).data.metrics) == {*EPOCH_METRICS, "val_loss",
                                                        "val_accuracy"}


def _special() -> list[EpochStats]:
    """Two chunks of uneven epochs, with NaN, +-inf and extreme step values."""
    rng = np.random.default_rng(0)
    chunks, first = [], 0
    for start, steps in ((0, [3, 1, 4]), (3, [2, 5])):
        total = sum(steps)
        loss = rng.random(total) * 10.0 ** rng.integers(-300, 300, total)
        trace = StepTrace(first, np.asarray(steps), loss, rng.random(total))
        chunks.append(EpochStats(start, *(rng.random(len(steps)) for _ in EPOCH_METRICS),
                                 trace=trace))
        first += total
    chunks[0].trace.loss[:4] = [np.nan, np.inf, -np.inf, 5e-324]  # type: ignore[union-attr]
    return chunks


def _direct_reads_back_like_log_batch(uri: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("special")
    chunks = _special()
    for every in (1, 2):
        direct_run = client.create_run(experiment).info.run_id
        batch_run = client.create_run(experiment).info.run_id
        sink = connect(uri)
        assert sink is not None, "the direct path must be recognised on a fresh store"
        for run_id, sending in ((direct_run, MetricWriter(client, sink, every)),
                                (batch_run, MetricWriter(client, None, every))):
            for chunk in chunks:
                sending.put(run_id, chunk)
            sending.close()
            assert sending.errors == []
        # epochs of 3, 1, 4, 2, 5 steps; every 2nd: epochs 0, 2, 4 (steps 0-2, 4-7, 10-14)
        steps = list(range(15)) if every == 1 else [0, 1, 2, 4, 5, 6, 7, 10, 11, 12, 13, 14]
        for name in STEP_METRICS:
            direct = _history(client, direct_run, name)
            assert [s for s, _ in direct] == steps, name
            assert str(direct) == str(_history(client, batch_run, name))  # NaN-aware
        runs = {r.info.run_id: r.data.metrics for r in client.search_runs([experiment])}
        assert runs[direct_run] == runs[batch_run]


def test_sqlite_direct_step_metrics_read_back_like_log_batch(tmp_path: Path) -> None:
    _direct_reads_back_like_log_batch(f"sqlite:///{tmp_path}/mlflow.db")


def test_postgresql_direct_step_metrics_read_back_like_log_batch(postgres) -> None:  # type: ignore[no-untyped-def]
    _direct_reads_back_like_log_batch(postgres.create_database("stepmetrics"))


def _sweep(tmp_path: Path, *flags: str) -> tuple[MlflowClient, list[str]]:
    code = run.main(["--study", "steps", "--n-trials", "2", "--epochs", "3", "--objective",
                     TINY, "--optimizers", "sgd,adam", "--schedulers", "onecycle",
                     "--lr-min", "1e-3", "--lr-max", "1e-1", "--sampler", "random",
                     "--pruner", "none", "--seed", "1", "--batch", "2", "--quiet",
                     "--no-plots", "--per-tensor", *flags])
    assert code == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("steps")
    runs = client.search_runs([experiment.experiment_id])
    children = [r.info.run_id for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2
    return client, children


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "log_batch"])
def test_a_sweep_with_log_steps_logs_every_step_of_every_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool) -> None:
    monkeypatch.chdir(tmp_path)
    if not direct:  # the store is not one the direct writer knows: log_batch
        monkeypatch.setattr("tracking.sql_metrics.connect", lambda uri: None)
    client, children = _sweep(tmp_path, "--log-steps")
    for run_id in children:
        for name in STEP_METRICS:
            history = _history(client, run_id, name)
            assert [s for s, _ in history] == list(range(3 * STEPS)), name
            assert all(np.isfinite(v) for _, v in history), name
        losses = [v for _, v in _history(client, run_id, "step_loss")]
        epoch_loss = [v for _, v in _history(client, run_id, "loss")]
        np.testing.assert_allclose(np.reshape(losses, (3, STEPS)).mean(axis=1), epoch_loss,
                                   rtol=1e-13, atol=0)


def test_a_sweep_without_log_steps_logs_no_step_metrics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    client, children = _sweep(tmp_path)
    for run_id in children:
        metrics = client.get_run(run_id).data.metrics
        assert "loss" in metrics and not set(STEP_METRICS) & set(metrics)
        for name in STEP_METRICS:
            assert client.get_metric_history(run_id, name) == [], name


def test_a_training_run_with_log_steps_logs_every_step(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = train_cli.main(["--objective", TINY, "--optimizer", "adam", "--lr", "0.05",
                           "--scheduler", "onecycle", "--epochs", "2", "--tracking-uri", uri,
                           "--log-steps", "--quiet"])
    assert code == 0
    client = MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    for name in STEP_METRICS:
        steps = [s for s, _ in _history(client, found.info.run_id, name)]
        assert steps == list(range(2 * STEPS)), name


def test_the_option_is_off_by_default_and_set_by_config_or_command_line(tmp_path: Path) -> None:
    from sweeps.study.config import SweepConfig

    parser = run.build_parser()
    assert SweepConfig().log_steps is False
    assert run.config_from_args(parser.parse_args([])).log_steps is False
    assert run.config_from_args(parser.parse_args(["--log-steps"])).log_steps is True
    toml = tmp_path / "sweep.toml"
    toml.write_text("log_steps = true\n", encoding="utf-8")
    assert run.config_from_args(parser.parse_args(["--config", str(toml)])).log_steps is True
    assert run.config_from_args(parser.parse_args(
        ["--config", str(toml), "--no-log-steps"])).log_steps is False
    assert train_cli.build_parser().parse_args([]).log_steps is False
