"""Per-epoch metrics to MLflow off the training thread.

``put`` hands a chunk of epochs to a background thread (or to the writer process, see
``tracking.metric_process``) and returns at once. The thread writes it with the direct SQL sink
where the store allows it (``tracking.sql_metrics``), and with ``MlflowClient.log_batch`` in
calls of at most 1,000 metrics otherwise. ``then`` queues work that must follow the metrics
already put (closing a trial's run), so the training loop never waits for the store.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sweeps.errors import first_line

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from sweeps.training.stats import EpochStats

    from .metric_process import MetricProcess
    from .sql_metrics import SqlMetricSink

__all__ = ["BATCH_LIMIT", "MetricWriter", "to_metrics"]

log = logging.getLogger(__name__)
BATCH_LIMIT = 1000  # MLflow's cap on metrics + params + tags per log_batch call
_RETRIES = 2  # attempts per batch, on top of MLflow's own HTTP retries


def _nothing() -> None:
    pass


def to_metrics(stats: EpochStats, every: int, names: tuple[str, ...]) -> list[Metric]:
    """One ``Metric`` per (name, epoch) for the epochs that are multiples of ``every``; a
    name is one of ``stats.names`` (``EPOCH_METRICS`` and the extra ones, e.g. val_loss).
    Where ``stats`` has a step trace (``log_steps``), also one per ``STEP_METRICS`` name and
    step of those epochs, at step = the step's global index."""
    from mlflow.entities import Metric

    from sweeps.training.stats import STEP_METRICS

    timestamp = int(time.time() * 1000)
    epochs = stats.epochs
    keep = epochs % every == 0
    steps = epochs[keep].tolist()
    out: list[Metric] = []
    for name in names:
        values = stats.metric(name)[keep].tolist()
        out.extend(Metric(name, v, timestamp, s) for v, s in zip(values, steps))
    trace = stats.trace
    if trace is not None and len(trace):
        mask = trace.of_epochs(keep)
        indices = trace.indices[mask].tolist()
        for name in STEP_METRICS:
            values = trace.metric(name)[mask].tolist()
            out.extend(Metric(name, v, timestamp, s) for v, s in zip(values, indices))
    return out


class MetricWriter:
    """A background thread that sends queued chunks of per-epoch metrics.

    ``flush`` waits until everything queued was sent, or failed after retries. Failures are
    kept in ``errors``; after the first, nothing more is sent (a lost server would otherwise
    cost minutes of retries per chunk), and the sweep stops at the end of the trials in hand.
    """

    def __init__(self, client: MlflowClient, sink: SqlMetricSink | None = None,
                 every: int = 1, process: MetricProcess | None = None) -> None:
        self._client = client
        self._sink = sink
        self._process = process  # direct writes in a child process, when given
        self._every = every
        self._queue: queue.Queue[tuple[str, EpochStats] | Callable[[], None] | None] = (
            queue.Queue())
        self._thread = threading.Thread(target=self._run, name="mlflow-metrics", daemon=True)
        self._thread.start()
        self.errors: list[str] = []
        self.values_sent = 0

    @property
    def direct(self) -> bool:
        """True while metrics go straight into the tracking database."""
        return self._sink is not None or self._process is not None

    def put(self, run_id: str, stats: EpochStats) -> None:
        if not len(stats):
            return
        if self._process is not None and self._process.alive:
            self._process.put(run_id, stats, self._every, stats.names,
                              int(time.time() * 1000))
            return
        self._queue.put((run_id, stats))

    def then(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the writer thread once everything put before it is written."""
        self._queue.put(work)

    def flush(self) -> None:
        """Wait until everything put or queued so far is written and done."""
        self.then(_nothing)  # queued work runs after the writer process's flush
        self._queue.join()

    def close(self) -> None:
        self.flush()
        if self._process is not None:
            self._note(self._process.close())
            self._process = None
        self._queue.put(None)
        self._thread.join()
        if self._sink is not None:
            self._sink.close()

    def _note(self, errors: list[str]) -> None:
        self.errors.extend(errors)  # the sweep stops on them, with one message

    def _flush_process(self) -> None:
        if self._process is not None:  # only this thread talks to the writer process
            self._note(self._process.flush())

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if callable(item):
                    self._flush_process()
                    item()
                else:
                    self._write(*item)
            except Exception as exc:  # keep serving; the sweep stops on errors
                self._note([f"{type(exc).__name__}: {exc}"])
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _write(self, run_id: str, stats: EpochStats) -> None:
        if self.errors:  # the store failed for good: drop the rest, do not wait on retries
            return
        if self._sink is not None:
            try:
                timestamp = int(time.time() * 1000)
                self.values_sent += self._sink.write(run_id, stats, self._every,
                                                     stats.names, timestamp)
                return
            except Exception as exc:
                log.warning("direct metric write failed (%s); using log_batch from now", exc)
                self._sink = None
        metrics = to_metrics(stats, self._every, stats.names)
        for i in range(0, len(metrics), BATCH_LIMIT):
            self._send(run_id, metrics[i : i + BATCH_LIMIT])

    def _send(self, run_id: str, batch: list[Metric]) -> None:
        for attempt in range(_RETRIES):
            try:
                self._client.log_batch(run_id, metrics=batch, synchronous=True)
                self.values_sent += len(batch)
                return
            except Exception as exc:  # keep training; the sweep stops on errors
                if attempt == _RETRIES - 1:
                    self.errors.append(f"could not log {len(batch)} metrics to run {run_id}: "
                                       f"{first_line(exc)}")
                else:
                    time.sleep(0.5 * (attempt + 1))
