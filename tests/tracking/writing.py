"""What the metric-writing tests share: an observer that keeps the chunks of a run, and a
``MetricWriter`` on each of the three write paths."""

from __future__ import annotations

from mlflow import MlflowClient

from sweeps.training.loop import Observer
from sweeps.training.stats import EpochStats
from tracking.metric_process import MetricProcess
from tracking.metrics import MetricWriter
from tracking.sql_metrics import connect

__all__ = ["PATHS", "Chunks", "writer"]

PATHS = ("direct", "process", "log_batch")  # SQL in a thread, SQL in a process, the API


class Chunks(Observer):
    """Keeps every chunk of statistics a run delivers."""

    def __init__(self) -> None:
        self.chunks: list[EpochStats] = []

    def on_chunk(self, stats: EpochStats) -> bool:
        self.chunks.append(stats)
        return False


def writer(path: str, client: MlflowClient, uri: str, every: int = 1) -> MetricWriter:
    """A writer to ``uri`` on write path ``path`` (one of ``PATHS``), of every ``every``-th
    epoch (``--log-every``)."""
    if path == "log_batch":
        return MetricWriter(client, None, every)
    sink = connect(uri)
    assert sink is not None, "the direct path must be recognised on a fresh store"
    if path == "direct":
        return MetricWriter(client, sink, every)
    sink.close()
    return MetricWriter(client, None, every, process=MetricProcess(uri))
