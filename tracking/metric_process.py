"""The direct metric writes in a child process, so they use the other core, not the GIL.

The training process only pickles each chunk's arrays onto a queue (a feeder thread sends
them); the child owns the ``SqlMetricSink`` and inserts. ``flush`` waits until the child has
written everything put before it. The child exits when told to, or when its parent is gone
(after writing what was already queued), so a killed sweep leaves no writer behind. It does
no torch work and never imports torch, so it starts no torch threads to compete with the
sweep's workers for the cores (``sweeps.parallel.threads``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweeps.training.stats import EpochStats

__all__ = ["MetricProcess"]

log = logging.getLogger(__name__)
_POLL_S = 1.0  # how often the child checks that its parent is alive while idle
_GROUP = 64  # chunks written in one transaction, at most


class MetricProcess:
    """A child process writing chunks of per-epoch metrics into the tracking database."""

    def __init__(self, tracking_uri: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._requests: Any = context.Queue()
        self._replies: Any = context.Queue()
        self._process = context.Process(
            target=_serve, args=(tracking_uri, self._requests, self._replies, os.getpid()),
            name="mlflow-metric-writer", daemon=True)
        self._process.start()
        self._flushes = 0

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def put(self, run_id: str, stats: EpochStats, every: int, names: tuple[str, ...],
            timestamp: int) -> None:
        arrays = {name: stats.metric(name) for name in names}
        self._requests.put(("write", run_id, stats.start, arrays, every, timestamp,
                            stats.trace))  # the trace: log_steps, else None

    def flush(self) -> list[str]:
        """Wait until everything put so far is written; returns the errors seen."""
        self._flushes += 1
        token = self._flushes
        self._requests.put(("flush", token))
        errors: list[str] = []
        while True:
            try:
                reply = self._replies.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._process.is_alive():
                    self._abandon()
                    return [*errors, "the metric writer process died"]
                continue
            if reply == ("flushed", token):
                return errors
            if reply[0] == "error":
                errors.append(reply[1])

    def close(self) -> list[str]:
        """Flush, then tell the child to stop. Everything is written when this returns; the
        child's own exit (its interpreter teardown) is not waited for, and as a
        daemon it cannot outlive this process."""
        if not self.alive:
            self._abandon()
            return ["the metric writer process died"]
        errors = self.flush()
        self._requests.put(None)
        return errors

    def _abandon(self) -> None:
        """The child died: what is still queued for it will never be read, so this process
        must not wait, when it exits, to send it (a chunk bigger than the pipe would
        otherwise hold the exit forever)."""
        self._requests.cancel_join_thread()


def _serve(tracking_uri: str, requests: Any, replies: Any, parent: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        _write_until_told(tracking_uri, requests, replies, parent)
    except Exception as exc:  # report, never a traceback on the user's terminal
        replies.put(("error", f"metric writer stopped: {type(exc).__name__}: {exc}"))


def _write_until_told(tracking_uri: str, requests: Any, replies: Any, parent: int) -> None:
    from collections import deque

    import numpy as np
    import sqlalchemy as sa

    from sweeps.storage.sqlite import tune_sqlite
    from sweeps.training.stats import EPOCH_METRICS, EpochStats

    from .sql_metrics import Chunk, SqlMetricSink

    def chunk(item: tuple[Any, ...]) -> Chunk:
        _, run_id, start, arrays, every, timestamp, trace = item
        n = len(next(iter(arrays.values())))
        columns = [arrays.get(m, np.full(n, np.nan)) for m in EPOCH_METRICS]
        extra = {k: v for k, v in arrays.items() if k not in EPOCH_METRICS}  # e.g. val_loss
        return (run_id, EpochStats(start, *columns, extra=extra, trace=trace), every,
                tuple(arrays), timestamp)

    connect_args = {"timeout": 60} if tracking_uri.startswith("sqlite:") else {}
    engine = sa.create_engine(tracking_uri, connect_args=connect_args, poolclass=sa.NullPool)
    tune_sqlite(engine)
    sink = SqlMetricSink(engine)
    held: deque[Any] = deque()  # taken from the queue while grouping, not yet handled
    while True:
        try:
            item = held.popleft() if held else requests.get(timeout=_POLL_S)
        except queue.Empty:
            if os.getppid() != parent:  # the parent died: everything queued is written
                break
            continue
        if item is None:
            break
        if item[0] == "flush":
            replies.put(("flushed", item[1]))
            continue
        group = [item]  # the chunks already waiting go into the same transaction
        while len(group) < _GROUP:
            try:
                more = requests.get_nowait()
            except queue.Empty:
                break
            if more is None or more[0] != "write":
                held.append(more)
                break
            group.append(more)
        try:
            sink.write_many([chunk(g) for g in group])
        except Exception as exc:  # report, keep serving
            runs = ", ".join(sorted({g[1] for g in group}))
            replies.put(("error", f"{runs}: {type(exc).__name__}: {exc}"))
    sink.close()
