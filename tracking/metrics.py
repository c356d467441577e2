"""Per-epoch metrics to MLflow off the training thread, in ``log_batch`` calls of 1,000."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from sweeps.stats import EpochStats

__all__ = ["BATCH_LIMIT", "MetricWriter", "to_metrics"]

log = logging.getLogger(__name__)
BATCH_LIMIT = 1000  # MLflow's cap on metrics + params + tags per log_batch call
_RETRIES = 3


def to_metrics(stats: EpochStats, every: int, names: tuple[str, ...]) -> list[Metric]:
    """One ``Metric`` per (name, epoch) for the epochs that are multiples of ``every``."""
    from mlflow.entities import Metric

    timestamp = int(time.time() * 1000)
    epochs = stats.epochs
    keep = epochs % every == 0
    steps = epochs[keep].tolist()
    out: list[Metric] = []
    for name in names:
        values = getattr(stats, name)[keep].tolist()
        out.extend(Metric(name, v, timestamp, s) for v, s in zip(values, steps))
    return out


class MetricWriter:
    """A background thread that sends queued metrics with ``log_batch``.

    ``put`` never waits for MLflow; ``flush`` waits until everything queued was sent (or
    failed after retries: failures are counted in ``errors`` and logged).
    """

    def __init__(self, client: MlflowClient) -> None:
        self._client = client
        self._queue: queue.Queue[tuple[str, list[Metric]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="mlflow-metrics", daemon=True)
        self._thread.start()
        self.errors: list[str] = []

    def put(self, run_id: str, metrics: list[Metric]) -> None:
        if metrics:
            self._queue.put((run_id, metrics))

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            run_id, metrics = item
            try:
                for i in range(0, len(metrics), BATCH_LIMIT):
                    self._send(run_id, metrics[i : i + BATCH_LIMIT])
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _send(self, run_id: str, batch: list[Metric]) -> None:
        for attempt in range(_RETRIES):
            try:
                self._client.log_batch(run_id, metrics=batch, synchronous=True)
                return
            except Exception as exc:  # keep training; report at flush
                if attempt == _RETRIES - 1:
                    self.errors.append(f"{run_id}: {exc}")
                    log.error("could not log %d metrics to run %s: %s", len(batch), run_id, exc)
                else:
                    time.sleep(0.5 * (attempt + 1))
