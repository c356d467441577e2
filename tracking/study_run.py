"""The MLflow side of a study: one experiment, one parent run, one nested child run per trial.

Everything goes through one ``MlflowClient`` with explicit run ids; per-epoch metrics and the
end of each trial are queued to a background writer so training never waits for MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from sweeps.training.loop import Observer, TrainResult
from sweeps.training.stats import EpochStats

from .metric_process import MetricProcess
from .metrics import MetricWriter, first_line

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["RUN_STATUS", "StudyTracker", "TrialRun", "artifact_root", "close_store",
           "dispose_engine"]

PARENT_TAG = "mlflow.parentRunId"
# Optuna's terminal states as MLflow run states (SPEC section 6).
RUN_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED",
              "interrupted": "KILLED"}
_PARAMS_PER_CALL = 100  # MLflow's cap on params per log_batch call


def artifact_root(tracking_uri: str) -> str | None:
    """``<db folder>/artifacts`` for a SQLite store; None (the server's choice) otherwise."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    return (db.parent.resolve() / "artifacts").as_uri()


class StudyTracker:
    """Creates or reattaches to the study's experiment and parent run."""

    def __init__(self, client: MlflowClient, experiment: str, log_every: int = 1,
                 direct: bool = True) -> None:
        from .sql_metrics import connect

        self.client = client
        self.experiment_id = self._experiment(experiment)
        sink = connect(client.tracking_uri) if direct else None
        process = None
        if sink is not None:  # checked here; the child process does the writing
            sink.close()
            sink, process = None, MetricProcess(client.tracking_uri)
        self.writer = MetricWriter(client, sink, log_every, process)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return str(found.experiment_id)
        root = artifact_root(self.client.tracking_uri)
        location = f"{root}/{name}" if root else None
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except Exception:  # another worker created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def start_parent(self, study: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        return self.start_run(params, {"study": study, **tags}, run_name=study).run_id

    def resume_parent(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def finish_parent(self, run_id: str, status: str) -> None:
        self.writer.flush()
        self.client.set_terminated(run_id, status=status)

    def start_trial(
        self, parent_id: str, number: int, params: dict[str, Any], tags: dict[str, str]
    ) -> TrialRun:
        tags = {PARENT_TAG: parent_id, "trial_number": str(number), **tags}
        return self.start_run(params, tags, run_name=f"trial-{number}")

    def start_run(
        self, params: dict[str, Any], tags: dict[str, str], run_name: str | None = None
    ) -> TrialRun:
        """A new run in the experiment, with its params logged."""
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        run_id = str(run.info.run_id)
        self.log_params(run_id, params)
        return TrialRun(self, run_id)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), _PARAMS_PER_CALL):
            self.client.log_batch(run_id, params=items[i : i + _PARAMS_PER_CALL])

    def close(self) -> None:
        self.writer.close()


class TrialRun(Observer):
    """A trial's child run: logs every chunk of epochs, then the outcome and the end state."""

    def __init__(self, tracker: StudyTracker, run_id: str) -> None:
        self.tracker = tracker
        self.run_id = run_id
        self.extra_tags: dict[str, str] = {}
        self.evaluate: Callable[[dict[str, Any]], dict[str, float]] | None = None

    def on_chunk(self, stats: EpochStats) -> bool:
        self.tracker.writer.put(self.run_id, stats)
        return False

    def on_end(self, result: TrainResult) -> None:
        """Queue the run's closing behind its metrics: training goes on meanwhile (the sweep
        flushes the writer before it tells Optuna the outcome)."""
        metrics = result_metrics(result)
        if self.evaluate is not None and result.params is not None:
            metrics.update(self.evaluate(result.params))
        tags = result_tags(result) | self.extra_tags
        self.tracker.writer.then(lambda: self.close(result.status, tags, metrics))

    def close(self, status: str, tags: dict[str, str], metrics: dict[str, float]) -> None:
        """Log the outcome and set the run's true terminal state."""
        from mlflow.entities import Metric, RunTag

        client = self.tracker.client
        now = int(time.time() * 1000)
        if self.tracker.writer.errors:  # the store is failing: do not wait on it again
            return
        try:
            client.log_batch(
                self.run_id,
                metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                tags=[RunTag(k, v) for k, v in tags.items()],
            )
            client.set_terminated(self.run_id, status=RUN_STATUS[status])
        except Exception as exc:  # the trial's Optuna result still counts; the sweep stops
            self.tracker.writer.errors.append(
                f"could not close run {self.run_id}: {first_line(exc)}")


def close_store(client: MlflowClient) -> None:
    """Close the database connections of ``client``'s store, if it has any (a SQL store).
    MLflow has no public call for this; an HTTP store has nothing to close."""
    dispose_engine(getattr(getattr(client, "_tracking_client", None), "store", None))


def dispose_engine(holder: object) -> None:
    """Close the connections of ``holder``'s SQLAlchemy engine, if it has one (MLflow's SQL
    store, Optuna's RDBStorage): its pool is replaced by an empty one, which reconnects on
    demand."""
    engine = getattr(holder, "engine", None)
    if engine is not None:
        engine.dispose()


def result_metrics(result: TrainResult) -> dict[str, float]:
    return {"final_loss": result.final_loss, "best_loss": result.best_loss,
            "epochs_run": float(result.epochs_run)}


def result_tags(result: TrainResult) -> dict[str, str]:
    tags: dict[str, str] = {"state": result.status}
    if result.verdict is not None:
        tags["verdict"] = result.verdict.name
        tags["verdict_reason"] = result.verdict.reason
    if result.status == "pruned":
        tags["pruned"] = "true"
    if result.failure is not None:
        tags["failure_reason"] = result.failure
        tags["failure_epoch"] = str(result.failure_epoch)
    return tags
