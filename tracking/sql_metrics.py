"""Per-epoch metrics written straight into MLflow's ``metrics`` and ``latest_metrics`` tables.

``MlflowClient.log_batch`` goes through MLflow's store value by value; a 10,000-epoch trial
logs 50,000 values. A bulk insert of the same rows costs a small fraction of that
(``python -m bench --only tracking`` times both). This module is the only place that writes
MLflow's tables directly, and it does so only when it is sure of the layout: the database's
Alembic revision must equal the installed MLflow's head revision, both tables must have
exactly the expected columns, and SQLite must have its JSON functions (each chunk's values
travel as one JSON array per metric). Anything else (another revision, an HTTP tracking
server, an error) means ``connect`` returns None and callers use ``log_batch``. Tests read
every value back through ``MlflowClient``. A chunk with a step trace (``log_steps``) adds
``step_loss`` and ``step_lr`` at step = the global step index: one JSON array per run of
consecutive steps (the whole chunk, or each logged epoch with ``--log-every`` N > 1).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from sweeps.training.stats import EpochStats, StepTrace

__all__ = ["Chunk", "SqlMetricSink", "connect"]

log = logging.getLogger(__name__)

METRICS_COLUMNS = {"key", "value", "timestamp", "run_uuid", "step", "is_nan"}
LATEST_COLUMNS = {"key", "value", "timestamp", "step", "is_nan", "run_uuid"}
# run id, per-epoch statistics, write every n-th epoch, metric names, timestamp (ms)
Chunk = tuple[str, "EpochStats", int, Sequence[str], int]
_LOCKED_RETRIES = 5  # transactions retried when SQLite answers "database is locked"
_LOCKED_PAUSE_S = 0.2  # times the attempt number, between them
_BIG = 1.7976931348623157e308  # MLflow stores +-inf as +-max double, NaN as 0 with is_nan


def connect(tracking_uri: str) -> SqlMetricSink | None:
    """A sink for ``tracking_uri`` if its schema is the one this module knows, else None."""
    if not tracking_uri.startswith(("sqlite:", "postgresql:", "postgresql+psycopg2:")):
        return None
    try:
        import sqlalchemy as sa
        from alembic.script import ScriptDirectory
        from mlflow.store.db.utils import _get_alembic_config

        head = ScriptDirectory.from_config(_get_alembic_config(tracking_uri)).get_current_head()
        connect_args = {"timeout": 60} if tracking_uri.startswith("sqlite:") else {}
        engine = sa.create_engine(tracking_uri, connect_args=connect_args, poolclass=sa.NullPool)
        with engine.connect() as conn:
            revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            if engine.dialect.name == "sqlite":  # JSON functions: built in since SQLite 3.38
                conn.execute(sa.text("SELECT count(*) FROM json_each('[1]')"))
        inspector = sa.inspect(engine)
        metrics = {c["name"] for c in inspector.get_columns("metrics")}
        latest = {c["name"] for c in inspector.get_columns("latest_metrics")}
    except Exception as exc:  # any doubt: use the public API
        log.info("direct metric writes disabled (%s); using log_batch", exc)
        return None
    if revision != head or metrics != METRICS_COLUMNS or latest != LATEST_COLUMNS:
        log.info("MLflow schema %s (head %s) not recognised; using log_batch", revision, head)
        return None
    from sweeps.storage.sqlite import tune_sqlite

    tune_sqlite(engine)  # WAL is a property of the file: MLflow's own commits get cheaper too
    return SqlMetricSink(engine)


def _busy(exc: Exception) -> bool:
    """True for SQLite's "database is locked" (SQLITE_BUSY, any extended form)."""
    import sqlite3

    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None \
        and code & 0xFF == sqlite3.SQLITE_BUSY


def _as_json(values: np.ndarray) -> tuple[str, float, bool]:
    """``values`` as a JSON array (NaN as null, +-inf as +-max double, like MLflow), and the
    last value and its NaN flag (for ``latest_metrics``). ``repr`` of a float reads back as
    the same double in SQLite and PostgreSQL."""
    is_nan = np.isnan(values)
    clean: list[float | None] = np.clip(values, -_BIG, _BIG).tolist()
    for i in np.flatnonzero(is_nan).tolist():
        clean[i] = None
    last = clean[-1]
    return json.dumps(clean), 0.0 if last is None else last, last is None


def _step_rows(run_id: str, trace: StepTrace, keep: np.ndarray, timestamp: int,
               arrays: list[tuple[Any, ...]], latest: list[tuple[Any, ...]]) -> int:
    """Add the rows of ``trace``'s steps in the epochs ``keep`` marks (``STEP_METRICS``, step
    = global step index) to ``arrays`` and ``latest``; returns their number. Each run of
    consecutive steps is one statement: the whole chunk, or each logged epoch with
    ``every`` > 1."""
    from sweeps.training.stats import STEP_METRICS

    mask = trace.of_epochs(keep)
    indices = trace.indices[mask]
    if not indices.size:
        return 0
    breaks = (np.flatnonzero(np.diff(indices) != 1) + 1).tolist()
    bounds = list(zip([0, *breaks], [*breaks, int(indices.size)]))
    for name in STEP_METRICS:
        values = trace.metric(name)[mask]
        for a, b in bounds:
            text, last_value, last_nan = _as_json(values[a:b])
            arrays.append((name, timestamp, run_id, int(indices[a]), 1, text))
        latest.append((name, last_value, timestamp, run_id, int(indices[-1]), last_nan))
    return int(indices.size) * len(STEP_METRICS)


# One statement per metric and chunk: the database expands the JSON array into rows, which
# costs less than binding one tuple per row.
_INSERT = {
    "sqlite": (
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
        "SELECT ?, coalesce(j.value, 0.0), ?, ?, ? + j.key * ?, j.value IS NULL "
        "FROM json_each(?) AS j WHERE true ON CONFLICT DO NOTHING"),
    "postgresql": (
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
        "SELECT %s, coalesce(j.v::float8, 0.0), %s, %s, %s + (j.i - 1) * %s, j.v IS NULL "
        "FROM json_array_elements_text(%s::json) WITH ORDINALITY AS j(v, i) "
        "ON CONFLICT DO NOTHING"),
}


class SqlMetricSink:
    """Inserts whole chunks of per-epoch metrics in one transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Any = None  # one DBAPI connection, opened at the first write
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        values = ", ".join([mark] * 6)
        self._insert = _INSERT[engine.dialect.name]
        self._latest = (
            f"INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, is_nan) "
            f"VALUES ({values}) ON CONFLICT (key, run_uuid) DO UPDATE SET "
            "value = excluded.value, timestamp = excluded.timestamp, step = excluded.step, "
            "is_nan = excluded.is_nan WHERE excluded.step >= latest_metrics.step"
        )

    def write(self, run_id: str, stats: EpochStats, every: int, names: Sequence[str],
              timestamp: int) -> int:
        """Insert the epochs of ``stats`` that are multiples of ``every``; returns rows."""
        return self.write_many([(run_id, stats, every, names, timestamp)])

    def write_many(self, chunks: Sequence[Chunk]) -> int:
        """``write`` for several chunks (of one or many runs) in one transaction; returns rows.

        A commit writes every page it touched to the log, and the chunks of a batch of trials
        touch the same index pages: one commit for all of them costs less per row than one
        commit per chunk.
        """
        arrays: list[tuple[Any, ...]] = []
        latest: list[tuple[Any, ...]] = []
        rows = 0
        for run_id, stats, every, names, timestamp in chunks:
            epochs = stats.epochs
            keep = epochs % every == 0
            steps = epochs[keep]  # consecutive epochs: their multiples of every, evenly spaced
            if not steps.size:
                continue
            first, last = int(steps[0]), int(steps[-1])
            for name in names:
                values, last_value, last_nan = _as_json(stats.metric(name)[keep])
                arrays.append((name, timestamp, run_id, first, every, values))
                latest.append((name, last_value, timestamp, run_id, last, last_nan))
            rows += len(steps) * len(names)
            if stats.trace is not None:
                rows += _step_rows(run_id, stats.trace, keep, timestamp, arrays, latest)
        if not rows:
            return 0
        for attempt in range(_LOCKED_RETRIES + 1):
            try:
                self._insert_rows(arrays, latest)
                return rows
            except Exception as exc:
                if attempt == _LOCKED_RETRIES or not _busy(exc):
                    raise
                # SQLite can answer BUSY at once, without waiting out its timeout (a write
                # on a snapshot another writer moved on): the transaction was rolled back,
                # and the rows are written again (inserts of existing rows do nothing)
                time.sleep(_LOCKED_PAUSE_S * (attempt + 1))
        return rows

    def _insert_rows(self, arrays: list[tuple[Any, ...]], latest: list[tuple[Any, ...]]) -> None:
        """One transaction: the metric rows, then the latest values."""
        # The DBAPI cursor directly: SQLAlchemy's execution layer would add a cost per row.
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        cursor = self._connection.cursor()
        try:
            cursor.executemany(self._insert, arrays)
            cursor.executemany(self._latest, latest)
            self._connection.commit()
        except BaseException:
            self._connection.rollback()
            raise
        finally:
            cursor.close()

    def holds_experiment(self, experiment_id: str, name: str, creation_time: int | None) -> bool:
        """True if this database holds experiment ``experiment_id`` with this name and
        creation time: the experiment a tracking server created is proof that this is the
        server's own database."""
        import sqlalchemy as sa

        query = sa.text("SELECT name, creation_time FROM experiments "
                        "WHERE experiment_id = :id")
        with self._engine.connect() as conn:
            row = conn.execute(query, {"id": int(experiment_id)}).first()
        return row is not None and (row[0], row[1]) == (name, creation_time)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._engine.dispose()
