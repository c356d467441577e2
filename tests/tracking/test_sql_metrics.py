"""The direct metric writer stores exactly what ``log_batch`` would, on SQLite and
PostgreSQL, and steps aside for anything it does not recognise."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from sweeps.training.stats import EPOCH_METRICS, EpochStats
from tracking.metrics import MetricWriter
from tracking.sql_metrics import connect


def _stats(start: int, n: int) -> EpochStats:
    rng = np.random.default_rng(start)
    arrays = [rng.random(n) for _ in EPOCH_METRICS]
    return EpochStats(start, *arrays)


def _special() -> EpochStats:
    stats = _stats(0, 6)
    stats.loss[1] = math.nan
    stats.loss[2] = math.inf
    stats.grad_abs_mean[3] = -math.inf
    return stats


def _wide(start: int, n: int) -> EpochStats:
    """Values over the whole double range, signed, and the smallest ones: each must read back
    as the very same double."""
    rng = np.random.default_rng(start)
    arrays = [rng.choice([-1.0, 1.0], n) * rng.random(n) * 10.0 ** rng.integers(-307, 308, n)
              for _ in EPOCH_METRICS]
    arrays[0][:3] = [5e-324, -2.2250738585072014e-308, 1.7976931348623157e308]
    return EpochStats(start, *arrays)


def _write_both_ways(uri: str, every: int = 1
                     ) -> tuple[MlflowClient, str, str, list[EpochStats]]:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("sql")
    direct_run = client.create_run(experiment).info.run_id
    batch_run = client.create_run(experiment).info.run_id
    chunks = [_stats(0, 7), _stats(7, 5), _special().head(6), _wide(18, 400)]
    chunks[2] = EpochStats(12, *(getattr(chunks[2], m) for m in EPOCH_METRICS))
    sink = connect(uri)
    assert sink is not None, "the direct path must be recognised on a fresh store"
    for run_id, writer in ((direct_run, MetricWriter(client, sink, every)),
                           (batch_run, MetricWriter(client, None, every))):
        for chunk in chunks:
            writer.put(run_id, chunk)
        writer.close()
        assert writer.errors == []
    return client, direct_run, batch_run, chunks


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _check_same(client: MlflowClient, direct_run: str, batch_run: str,
                chunks: list[EpochStats], every: int = 1) -> None:
    whole = EpochStats.concat(chunks)
    for key in EPOCH_METRICS:
        direct = _history(client, direct_run, key)
        assert [s for s, _ in direct] == list(range(0, len(whole), every))
        expected = np.clip(getattr(whole, key), -1.7976931348623157e308,
                           1.7976931348623157e308)[::every]
        for (_, got), want in zip(direct, expected, strict=True):
            assert (math.isnan(got) and math.isnan(want)) or got == want
        batch = _history(client, batch_run, key)
        assert str(direct) == str(batch)  # NaN-aware equality, same encoding as log_batch
    runs = {r.info.run_id: r for r in client.search_runs([client.get_run(direct_run)
                                                          .info.experiment_id])}
    assert runs[direct_run].data.metrics == runs[batch_run].data.metrics


@pytest.mark.parametrize("every", [1, 3])
def test_sqlite_direct_writes_read_back_like_log_batch(tmp_path: Path, every: int) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _check_same(*_write_both_ways(uri, every), every)


@pytest.mark.parametrize("every", [1, 3])
def test_postgresql_direct_writes_read_back_like_log_batch(postgres, every: int) -> None:  # type: ignore[no-untyped-def]
    uri = postgres.create_database(f"sqlmetrics{every}")
    _check_same(*_write_both_ways(uri, every), every)


def test_unknown_schema_revision_falls_back(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(tracking_uri=uri).search_experiments()  # creates the schema
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'not-a-revision'")
    assert connect(uri) is None


def test_http_tracking_uses_log_batch() -> None:
    assert connect("http://127.0.0.1:5000") is None


def test_a_locked_database_is_retried_and_every_row_arrives(tmp_path: Path) -> None:
    """SQLite may answer "database is locked" without waiting its timeout out; the sink
    writes the transaction again. Here another connection holds the write lock for longer
    than the sink's (shortened) timeout, then lets go."""
    import threading

    import sqlalchemy as sa

    from tracking.sql_metrics import SqlMetricSink

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("locked")).info.run_id
    assert connect(uri) is not None  # a schema the sink writes
    sink = SqlMetricSink(sa.create_engine(uri, connect_args={"timeout": 0.05},
                                          poolclass=sa.NullPool))
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None,
                             check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # the write lock
    release = threading.Timer(0.3, holder.execute, args=("COMMIT",))
    release.start()
    try:
        rows = sink.write(run_id, _stats(0, 4), 1, EPOCH_METRICS, 0)  # locked at first
    finally:
        release.join()
        holder.close()
        sink.close()
    assert rows == 4 * len(EPOCH_METRICS)
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
