"""The MLflow side of a study: one experiment, one parent run, one nested child run per trial.

Everything goes through one ``MlflowClient`` with explicit run ids; per-epoch metrics and the
end of each trial are queued to a background writer so training never waits for MLflow.
``StudyTracker`` is the tracker a sweep is given (``sweeps.study.tracker.SweepTracker``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from sweeps.errors import first_line
from sweeps.storage.backends import dispose_engine, redact
from sweeps.training.loop import Observer, TrainResult
from sweeps.training.stats import EpochStats

from .metric_process import MetricProcess
from .metrics import MetricWriter
from .run_end import terminate

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Experiment

__all__ = ["RUN_STATUS", "StudyTracker", "TrialRun", "artifact_root", "close_store"]

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
# Optuna's terminal states as MLflow run states (SPEC section 6).
RUN_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED",
              "interrupted": "KILLED"}
_PARAMS_PER_CALL = 100  # MLflow's cap on params per log_batch call
KIND_TAG = "mlflow.experimentKind"  # the MLflow UI's choice of view for an experiment
MODEL_TRAINING = "custom_model_development"  # its runs view (the other: genai_development)

Evaluate = Callable[[TrainResult], dict[str, float]]  # metrics of a trial's final state


def artifact_root(tracking_uri: str) -> str | None:
    """``<db folder>/artifacts`` for a SQLite store; None (the server's choice) otherwise."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    return (db.parent.resolve() / "artifacts").as_uri()


class StudyTracker:
    """The study's experiment, its parent run (created or reattached to) and its trials'
    runs nested under it."""

    def __init__(self, client: MlflowClient, experiment: str, log_every: int = 1,
                 direct: bool = True, metrics_db: str | None = None) -> None:
        """``metrics_db``: the tracking server's own database, where per-epoch metrics are
        written directly once it is shown to hold the server's experiment."""
        self.client = client
        self.experiment_id, self._found = self._experiment(experiment)
        self.parent_run_id: str | None = None
        database = metrics_db or client.tracking_uri
        process = None
        if direct and self._direct_ok(database, metrics_db is not None):
            process = MetricProcess(database)  # the child process does the writing
        elif client.tracking_uri.startswith(("http://", "https://")):
            log.info("per-epoch metrics go through the tracking server's log_batch (its CPU, "
                     "about 60 us a value); --tracking-db names its database to write them "
                     "directly, --log-every N sends a tenth with N=10")
        self.writer = MetricWriter(client, None, log_every, process)

    def _direct_ok(self, database: str, named: bool) -> bool:
        """True if per-epoch metrics can go straight into ``database``: a schema this
        version knows and, for a database the user named, the server's experiment in it."""
        from .sql_metrics import connect

        sink = connect(database)
        if sink is None:
            if named:
                log.warning("tracking-db %s: not a database whose MLflow schema this version "
                            "writes; per-epoch metrics go through the tracking server",
                            redact(database))
            return False
        try:
            if not named:
                return True
            experiment = self._found or self.client.get_experiment(self.experiment_id)
            if sink.holds_experiment(self.experiment_id, experiment.name,
                                     experiment.creation_time):
                log.info("per-epoch metrics are written straight into the tracking server's "
                         "database %s", redact(database))
                return True
            log.warning("tracking-db %s does not hold the tracking server's experiment %s; "
                        "per-epoch metrics go through the server (about 60 us of its CPU a "
                        "value)", redact(database), self.experiment_id)
            return False
        finally:
            sink.close()

    def _experiment(self, name: str) -> tuple[str, Experiment | None]:
        """The experiment ``name``'s id, created (or restored) where needed, and marked as
        model training (``KIND_TAG``), so that the MLflow UI opens it in its runs view and
        not its GenAI one; and the experiment as read, where it was (None: created)."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            if KIND_TAG not in found.tags:  # created by an earlier version
                self.client.set_experiment_tag(found.experiment_id, KIND_TAG, MODEL_TRAINING)
            return str(found.experiment_id), found
        root = artifact_root(self.client.tracking_uri)
        location = f"{root}/{name}" if root else None
        try:
            return str(self.client.create_experiment(name, artifact_location=location,
                                                     tags={KIND_TAG: MODEL_TRAINING})), None
        except Exception:  # another worker created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id), found

    def start_parent(self, study: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        self.parent_run_id = self.start_run(params, {"study": study, **tags},
                                            run_name=study).run_id
        return self.parent_run_id

    def resume_parent(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")
        self.parent_run_id = run_id

    def start_trial(self, number: int, params: dict[str, Any], tags: dict[str, str], *,
                    late_tags: Mapping[str, str] = {},
                    evaluate: Evaluate | None = None) -> TrialRun:
        """The run of trial ``number``, nested under the parent run."""
        assert self.parent_run_id is not None, "start or resume the parent run first"
        tags = {PARENT_TAG: self.parent_run_id, "trial_number": str(number), **tags}
        return self.start_run(params, tags, run_name=f"trial-{number}", late_tags=late_tags,
                              evaluate=evaluate)

    def start_run(self, params: dict[str, Any], tags: dict[str, str],
                  run_name: str | None = None, *, late_tags: Mapping[str, str] = {},
                  evaluate: Evaluate | None = None) -> TrialRun:
        """A new run in the experiment, with its params logged. ``late_tags`` are read when
        the run closes (tags added while it trains); ``evaluate`` adds metrics of the final
        parameters."""
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        run_id = str(run.info.run_id)
        self.log_params(run_id, params)
        return TrialRun(self, run_id, late_tags, evaluate)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), _PARAMS_PER_CALL):
            self.client.log_batch(run_id, params=items[i : i + _PARAMS_PER_CALL])

    def flush(self) -> None:
        """Return once every queued metric is written and every ended run closed."""
        self.writer.flush()

    @property
    def failure(self) -> str | None:
        """Why writing to MLflow failed, if it did."""
        return self.writer.errors[0] if self.writer.errors else None

    def end_run(self, run_id: str, state: str) -> None:
        """Close the run of a trial another process left behind."""
        self.client.set_tag(run_id, "state", state)
        terminate(self.client, run_id, RUN_STATUS[state])

    def end_orphan_runs(self, state_of: Callable[[str], str | None]) -> None:
        """Close the experiment's runs still RUNNING whose trial has ended:
        ``state_of(trial_number)`` says how (None: leave the run alone)."""
        for run in self.client.search_runs([self.experiment_id],
                                           filter_string="attributes.status = 'RUNNING'",
                                           max_results=50000):
            state = state_of(run.data.tags.get("trial_number", ""))
            if state is not None:
                self.end_run(run.info.run_id, state)

    def close(self) -> None:
        self.writer.close()


class TrialRun(Observer):
    """A trial's child run: logs every chunk of epochs, then the outcome and the end state."""

    def __init__(self, tracker: StudyTracker, run_id: str,
                 late_tags: Mapping[str, str] = {}, evaluate: Evaluate | None = None) -> None:
        self.tracker = tracker
        self.run_id = run_id
        self.late_tags = late_tags  # read when the run closes
        self.evaluate = evaluate
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        """True once the outcome is logged and the run ended (or closing it failed)."""
        return self._closed.is_set()

    def on_report(self, stats: EpochStats) -> None:
        """Queue the chunk's metrics in the first phase of a delivery, before the observers
        after this one (the study's reporter) hear of it."""
        self.tracker.writer.put(self.run_id, stats)

    def on_end(self, result: TrainResult) -> None:
        """Queue the run's closing behind its metrics: training goes on meanwhile (the sweep
        flushes the writer before it tells Optuna the outcome)."""
        metrics = result_metrics(result)
        if self.evaluate is not None and result.params is not None:
            metrics.update(self.evaluate(result))
        tags = result_tags(result) | dict(self.late_tags)
        self.tracker.writer.then(lambda: self.close(result.status, tags, metrics))

    def close(self, status: str, tags: dict[str, str], metrics: dict[str, float]) -> None:
        """Log the outcome and set the run's true terminal state."""
        try:
            self._close(status, tags, metrics)
        finally:
            self._closed.set()

    def _close(self, status: str, tags: dict[str, str], metrics: dict[str, float]) -> None:
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
            terminate(client, self.run_id, RUN_STATUS[status])
        except Exception as exc:  # the trial's Optuna result still counts; the sweep stops
            self.tracker.writer.errors.append(
                f"could not close run {self.run_id}: {first_line(exc)}")


def close_store(client: MlflowClient) -> None:
    """Close the database connections of ``client``'s store, if it has any (a SQL store).
    MLflow has no public call for this; an HTTP store has nothing to close."""
    dispose_engine(getattr(getattr(client, "_tracking_client", None), "store", None))


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
