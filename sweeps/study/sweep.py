"""An Optuna study of one objective: create or resume it, run trials until the study holds
its target number of finished trials, and mirror everything to MLflow."""

from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeps.study.config import SweepConfig
from sweeps.errors import UsageError
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import ObjectiveStartError, Observer, TrainResult, default_chunk
from sweeps.cli.progress import SweepProgress
from sweeps.study.prune_view import PruneView
from sweeps.study.reaper import INTERRUPTED_ATTR, Heartbeat, reap_stale
from sweeps.study.space import SearchSpace
from sweeps.diagnostics.stall import StallWatch
from sweeps.training.stats import EpochStats
from sweeps.storage.backends import redact

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

    from objectives import Objective
    from tracking.report import Plotter
    from tracking.study_run import StudyTracker, TrialRun

__all__ = ["Sweep", "TrackingFailed", "counted_trials", "open_sweep", "search_space"]

log = logging.getLogger(__name__)

SETTINGS_ATTR = "lrsweep_settings"  # fixed settings, compared on resume
PARENT_ATTR = "mlflow_parent_run_id"
LR_RANGES_ATTR = "lr_ranges"  # --lr-range auto: the intervals, fixed at the first run
PRUNE_CHECKS = (0.2, 0.4, 0.6, 0.8)  # fractions of the epochs at which the pruner is asked


def counted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Finished trials that count towards the target (interrupted ones do not)."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False, states=states)
            if INTERRUPTED_ATTR not in t.user_attrs]


class TrackingFailed(RuntimeError):
    """MLflow could not be written to: the sweep stops after the trials in hand (their
    results are in Optuna) and can be resumed with the same command."""


class OptunaReporter(Observer):
    """Reports each chunk's last loss as an intermediate value, keeps the trial's heartbeat
    fresh, stops a stalled trial (with ``stall``), and asks the pruner at ``PRUNE_CHECKS``
    fractions of the epochs (each question reads every trial of the study: ``PruneView``
    shares one read among a batch)."""

    def __init__(self, trial: optuna.Trial, epochs: int, view: PruneView,
                 stall: StallWatch | None = None) -> None:
        self.trial = trial
        self.stall = stall
        self.stopped: dict[str, str] = {}  # why the reporter stopped the trial, if it did
        self.heartbeat = Heartbeat(trial)
        self.result: TrainResult | None = None
        self.checks = sorted({max(1, int(f * epochs)) for f in PRUNE_CHECKS})
        self.view = view  # shared by the batch: one read of the study per check
        self.reported: dict[int, float] = {}

    def on_end(self, result: TrainResult) -> None:
        self.result = result

    def on_chunk(self, stats: EpochStats) -> bool:
        self.heartbeat.beat()
        if not len(stats):
            return False
        done = stats.start + len(stats)
        value = float(stats.loss[-1])
        self.trial.report(value, step=done - 1)
        self.reported[done - 1] = value
        if self.stall is not None and self.stall.on_chunk(stats):
            assert self.stall.verdict is not None
            self.stopped.update(pruned_by="stalled", pruned_reason=self.stall.verdict.reason)
            for key, text in self.stopped.items():
                self.trial.set_user_attr(key, text)
            return True
        if not self.checks or done < self.checks[0]:
            return False
        self.checks = [c for c in self.checks if c > done]
        return self.view.should_prune(self.trial, self.reported)


@dataclass
class Sweep:
    config: SweepConfig
    objective: Objective
    epochs: int
    study: optuna.Study
    space: SearchSpace
    tracker: StudyTracker
    parent_run_id: str
    device: str
    storage: BaseStorage  # the study's, as opened (see ``close_stores``)
    exhausted: bool = False  # a grid search ran its last point
    histories: dict[str, EpochStats] = field(default_factory=dict)  # run id -> best trials
    _best_loss: dict[str, float] = field(default_factory=dict)  # run id -> its final loss
    plotter: Plotter | None = None  # draws the plots at the end (None: --no-plots)
    reference: EpochStats | None = None  # the plots' reference run, trained in a batch
    progress: SweepProgress = field(default_factory=lambda: SweepProgress(0, 0, 0, False))

    def run(self) -> None:
        """Run trials, ``config.batch`` at a time, until the target is reached (or the
        timeout passes)."""
        deadline = time.monotonic() + self.config.timeout if self.config.timeout else None
        while not self.exhausted:
            reap_stale(self.study, self.tracker)
            missing = self._missing()
            if missing <= 0:
                return
            if deadline is not None and time.monotonic() > deadline:
                log.info("timeout reached; the study can be resumed with the same command")
                return
            trials = []
            for _ in range(min(self.config.batch, missing, self._grid_left())):
                trial = self.study.ask()
                if self._surplus(trial):
                    break
                trials.append(trial)
            if not trials:
                return
            self.run_trials(trials)
            if self.tracker.writer.errors:
                raise TrackingFailed(self.tracker.writer.errors[0])

    def _grid_left(self) -> int:
        """Grid points not yet asked for (a grid sampler repeats points once they run out)."""
        if self.config.sampler != "grid":
            return self.config.batch
        size = math.prod(len(v) for v in self.space.grid().values())
        asked = {t.system_attrs.get("grid_id") for t in self.study.get_trials(deepcopy=False)}
        return max(1, size - len(asked - {None}))

    def _missing(self) -> int:
        """Trials still to start: the target less the finished and the running ones."""
        from optuna.trial import TrialState

        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return self.config.n_trials - len(counted_trials(self.study)) - len(running)

    def _surplus(self, trial: optuna.Trial) -> bool:
        """True (and the trial discarded) if other workers already fill the target."""
        from optuna.trial import TrialState

        live = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        ahead = [t for t in self.study.get_trials(deepcopy=False, states=live)
                 if t.number < trial.number and INTERRUPTED_ATTR not in t.user_attrs]
        if len(ahead) < self.config.n_trials:
            return False
        trial.set_user_attr(INTERRUPTED_ATTR, "surplus")
        self.study.tell(trial, state=TrialState.FAIL)
        return True

    def run_trials(self, trials: list[optuna.Trial]) -> list[TrainResult]:
        """Run ``trials`` (batched where possible) and tell Optuna each outcome."""
        from optuna.trial import TrialState

        from tracking.report import REFERENCE

        from sweeps.batched.trials import train_batch

        view = PruneView(self.study)
        started: list[tuple[Hyperparams, TrialRun, OptunaReporter]] = []
        # The plots' reference run rides along in the first batch (nearly free there).
        extra = [REFERENCE] if self.plotter is not None and self.reference is None else []
        try:
            for trial in trials:
                started.append(self._start(trial, view))
            hps = [hp for hp, _, _ in started]
            ticker = self.progress.observer()
            observers: list[tuple[Observer, ...]] = [(reporter, run, ticker)
                                                     for _, run, reporter in started]
            results = train_batch(self.objective, hps + extra, self.epochs,
                                  device=self.device, observers=observers + [()] * len(extra),
                                  chunk=default_chunk(self.epochs))
            if extra:
                self.reference = results.pop().history
        except BaseException as exc:
            self.tracker.writer.flush()  # the runs of trials that ended are closed
            for trial, (hp, run, reporter) in zip(trials, started):
                if reporter.result is not None:
                    self._tell_result(trial, hp, reporter.result)
                else:
                    self._interrupt(trial, run, exc)
            for trial in trials[len(started):]:  # asked, interrupted before it started
                trial.set_user_attr(INTERRUPTED_ATTR, f"interrupted: {type(exc).__name__}")
                self.study.tell(trial, state=TrialState.FAIL)
            raise
        self.tracker.writer.flush()  # every run is closed before Optuna hears the outcome
        for trial, hp, result in zip(trials, hps, results):
            self._tell_result(trial, hp, result)
        return results

    def _start(self, trial: optuna.Trial,
               view: PruneView) -> tuple[Hyperparams, TrialRun, OptunaReporter]:
        hp = self.space.sample(trial)
        trial.set_user_attr("hparams", hp.to_dict())
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("device", self.device)
        stall = StallWatch(self.epochs) if self.config.prune_stalled else None
        reporter = OptunaReporter(trial, self.epochs, view, stall)
        reporter.heartbeat.beat()
        run = self.tracker.start_trial(
            self.parent_run_id, trial.number, self.run_params(hp), {"study": self.study.study_name}
        )
        trial.set_user_attr("mlflow_run_id", run.run_id)
        run.extra_tags = reporter.stopped  # filled in if the reporter stops the trial
        run.evaluate = self._evaluate
        return hp, run, reporter

    def _evaluate(self, params: dict[str, Any]) -> dict[str, float]:
        from objectives import evaluate

        return evaluate(self.objective, params)

    def _interrupt(self, trial: optuna.Trial, run: TrialRun, exc: BaseException) -> None:
        """The trial did not end by itself: FAIL and not counted (once the objective is
        fixed, the same command runs it again); its run KILLED, or FAILED if the objective
        could not start. The caller has flushed the metric writer."""
        from optuna.trial import TrialState

        if isinstance(exc, ObjectiveStartError):
            run.close("failed", {"state": "failed", "failure_reason": str(exc),
                                 "failure_epoch": "0"}, {})
            trial.set_user_attr("failure", str(exc))
            trial.set_user_attr(INTERRUPTED_ATTR, "objective failed to start")
        else:
            reason = f"interrupted: {type(exc).__name__}"
            run.close("interrupted", {"state": "interrupted", "failure_reason": reason}, {})
            trial.set_user_attr(INTERRUPTED_ATTR, reason)
        self.study.tell(trial, state=TrialState.FAIL)

    def _tell_result(self, trial: optuna.Trial, hp: Hyperparams, result: TrainResult) -> None:
        from optuna.trial import TrialState

        for key, value in summary_attrs(result).items():
            trial.set_user_attr(key, value)
        if result.status == "complete":
            self._tell(trial, result.final_loss, TrialState.COMPLETE)
        else:
            self._tell(trial, None, TrialState.PRUNED if result.status == "pruned"
                       else TrialState.FAIL)
        log.info("trial %d %s: %s lr=%.3g %s final_loss=%.4g", trial.number, result.status,
                 hp.optimizer, hp.lr, hp.scheduler, result.final_loss)
        self.progress.trial_done(hp, result, len(counted_trials(self.study)))
        self._keep_history(trial, result)

    def _keep_history(self, trial: optuna.Trial, result: TrainResult, keep: int = 5) -> None:
        """Remember the curves of the best completed trials (for the plots), no more."""
        run_id = trial.user_attrs.get("mlflow_run_id")
        if result.status != "complete" or run_id is None:
            return
        self.histories[run_id] = result.history
        self._best_loss[run_id] = result.final_loss
        for worst in sorted(self._best_loss, key=self._best_loss.__getitem__)[keep:]:
            del self.histories[worst], self._best_loss[worst]

    def finish(self, status: str) -> None:
        """Close the parent run: best value and params, ``best_params.json``, ``trials.csv``."""
        from mlflow.entities import Metric, RunTag

        from sweeps.study.results import best_documents, dumps, trials_frame, write_json

        client = self.tracker.client
        self.tracker.close()
        try:
            best = best_documents(self.study)[0]
        except UsageError:
            best = None
        with tempfile.TemporaryDirectory() as folder:
            plots = self._start_plots(folder) if best is not None else None
            client.log_text(self.parent_run_id, trials_frame(self.study).to_csv(index=False),
                            "trials.csv")
            if best is not None:
                client.log_text(self.parent_run_id, dumps(best), "best_params.json")
                tags = {f"best.{key}": str(value) for key, value in best["params"].items()}
                tags["best.trial"] = str(best["trial"])
                metric = Metric("best_value", best["value"], int(time.time() * 1000),
                                len(counted_trials(self.study)))
                client.log_batch(self.parent_run_id, metrics=[metric],
                                 tags=[RunTag(k, v) for k, v in tags.items()])
            if plots is not None:  # drawn in the child meanwhile
                plots.result()
                client.log_artifacts(self.parent_run_id, folder, "plots")
        if best is not None:
            if self.config.export:
                write_json(self.config.export, best, force=True)
            log.info("best trial %d: final_loss=%.4g %s", best["trial"], best["value"],
                     best["params"])
        client.set_terminated(self.parent_run_id, status=status)
        if self.plotter is not None:
            self.plotter.close()
            self.plotter = None

    def close_stores(self) -> None:
        """Close the database connections of the study and of MLflow now, rather than
        whenever the interpreter frees them (a SQLite file then holds everything, its
        write-ahead log folded in). They reopen if used again."""
        from tracking.study_run import close_store, dispose_engine

        close_store(self.tracker.client)
        dispose_engine(self.storage)  # RDBStorage; a journal holds no engine

    def _tell(self, trial: optuna.Trial, value: float | None, state: Any) -> None:
        """``study.tell``; a grid sampler's ``study.stop()`` on its last point ends the sweep."""
        try:
            self.study.tell(trial, value, state=state)
        except RuntimeError as exc:  # GridSampler stops the study outside optimize()
            if "Study.stop" not in str(exc):
                raise
            log.info("the grid is exhausted")
            self.exhausted = True

    def _start_plots(self, folder: str) -> Future[list[str]] | None:
        """Start drawing the plots into ``folder`` (None: --no-plots)."""
        if self.plotter is None:
            return None
        return self.plotter.submit(self.study, self.config.storage, self.tracker.client,
                                   folder, histories=self.histories, reference=self.reference)

    def summary(self, top: int = 5) -> str:
        """The top trials with their verdicts, and the commands to export or re-run the best."""
        from sweeps.study.config import SweepConfig
        from sweeps.cli.progress import summary
        from sweeps.study.results import trials_frame

        frame = trials_frame(self.study)
        where = f"--study {self.study.study_name}"
        if self.config.storage != SweepConfig().storage:
            where += f" --storage {redact(self.config.storage)}"
        commands = [f"python -m sweeps.compare {where}",
                    f"python -m sweeps.export {where} --out best.json",
                    "python -m sweeps.train --params best.json"]
        return summary(frame, top, commands, self.links(frame, top))

    def links(self, frame: Any, top: int) -> dict[str, str]:
        """MLflow UI links to the top trials side by side (http tracking: that server)."""
        from tracking.links import DEFAULT_BASE, sweep_links

        base = self.config.tracking_uri if self.config.tracking_uri.startswith("http") \
            else DEFAULT_BASE
        best = frame[frame["state"] == "COMPLETE"].sort_values("final_loss").head(top)
        run_ids = [r for r in best["mlflow_run_id"] if isinstance(r, str)]
        return sweep_links(base, self.tracker.experiment_id, run_ids) if run_ids else {}

    def run_params(self, hp: Hyperparams) -> dict[str, Any]:
        args = {f"objective.{k}": v for k, v in self.objective.arguments().items()}
        return {**hp.to_dict(), "epochs": self.epochs, "objective": self.objective.name,
                **args, "seed": self.config.seed}


def summary_attrs(result: TrainResult) -> dict[str, Any]:
    """What a trial keeps in Optuna beside its value, for comparison and export."""
    import numpy as np

    ratio = result.history.update_ratio
    finite = ratio[np.isfinite(ratio)]
    attrs: dict[str, Any] = {
        "final_loss": result.final_loss if math.isfinite(result.final_loss) else None,
        "best_loss": result.best_loss if math.isfinite(result.best_loss) else None,
        "epochs_run": result.epochs_run,
        "mean_update_ratio": float(finite.mean()) if len(finite) else None,
    }
    if result.verdict is not None:
        attrs["verdict"] = result.verdict.name
        attrs["verdict_reason"] = result.verdict.reason
    if result.failure is not None:
        attrs["failure"] = result.failure
        attrs["failure_epoch"] = result.failure_epoch
    return attrs


def fixed_settings(config: SweepConfig, objective: Objective, epochs: int) -> dict[str, Any]:
    return {"objective": objective.name, "objective_args": objective.arguments(),
            "epochs": epochs}


def make_sampler(config: SweepConfig, space: SearchSpace) -> optuna.samplers.BaseSampler:
    import optuna

    seed = config.seed
    if config.sampler == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if config.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    # constant_liar: trials asked together (a batch, other workers) spread out
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(config: SweepConfig, epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    if config.pruner == "none":
        return optuna.pruners.NopPruner()
    if config.pruner == "hyperband":
        chunk = default_chunk(epochs)
        return optuna.pruners.HyperbandPruner(min_resource=chunk, max_resource=epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=epochs // 5)


def open_study(config: SweepConfig, objective: Objective, epochs: int, space: SearchSpace,
               storage: BaseStorage | None = None) -> optuna.Study:
    """Create the study, or load it and check that its fixed settings match. ``storage``:
    ``open_storage(config.storage)`` unless given."""
    import optuna

    from sweeps.storage.backends import open_storage

    if storage is None:
        storage = open_storage(config.storage)
    settings = fixed_settings(config, objective, epochs)
    study = optuna.create_study(
        storage=storage, study_name=config.study_name, direction="minimize",
        sampler=make_sampler(config, space), pruner=make_pruner(config, epochs),
        load_if_exists=True,
    )
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
    elif stored != settings:
        key = next(k for k in settings if stored.get(k) != settings.get(k))
        engine = getattr(storage, "engine", None)
        if engine is not None:  # close the database: a refused resume leaves nothing behind
            engine.dispose()
        raise UsageError(
            key.replace("_", "-"), settings[key],
            f"study {config.study_name!r} was created with {key}={stored.get(key)!r}; "
            "use the same value to resume, or another --study",
        )
    return study


def search_space(config: SweepConfig, epochs: int) -> SearchSpace:
    """The space ``config`` searches (before any ``--lr-range auto`` intervals), checked."""
    return SearchSpace(config.optimizers, config.schedulers, epochs, config.lr_min,
                       config.lr_max).validated()


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device", device, "CUDA is not available here; use auto or cpu")
    return device


def open_sweep(config: SweepConfig) -> Sweep:
    """Everything a sweep needs, checked before anything is written."""
    from mlflow import MlflowClient

    from objectives import build
    from tracking.preflight import check_tracking
    from tracking.study_run import StudyTracker

    from sweeps.storage.backends import absolute_uri, open_storage

    objective = build(config.objective, config.objective_args)
    epochs = config.epochs or objective.default_epochs
    device = resolve_device(config.device)
    check_tracking(config.tracking_uri)
    space = search_space(config, epochs)
    storage = open_storage(config.storage)
    study = open_study(config, objective, epochs, space, storage)
    tests: dict[str, Any] = {}
    if config.lr_range == "auto":
        space, tests = _auto_space(study, space, objective, device,
                                   enqueue=config.sampler != "grid")
    tracking_uri = absolute_uri(config.tracking_uri, create_folder=True)
    tracker = StudyTracker(MlflowClient(tracking_uri=tracking_uri),
                           config.experiment_name, config.log_every)
    parent = study.user_attrs.get(PARENT_ATTR)
    if parent is None:
        params = {**space.describe(), "sampler": config.sampler, "pruner": config.pruner,
                  "seed": config.seed, "n_trials": config.n_trials, "epochs": epochs,
                  "objective": objective.name,
                  **{f"objective.{k}": v for k, v in objective.arguments().items()}}
        parent = tracker.start_parent(study.study_name, params, {"role": "study"})
        study.set_user_attr(PARENT_ATTR, parent)
        study.set_user_attr("seed", config.seed)
        study.set_user_attr("mlflow_experiment_id", tracker.experiment_id)
    else:
        tracker.resume_parent(parent)
    if tests:
        _log_range_tests(tracker, parent, tests)
    sweep = Sweep(config, objective, epochs, study, space, tracker, parent, device, storage)
    reap_stale(study, tracker, close_orphan_runs=True)
    if config.plots:
        from tracking.report import Plotter

        sweep.plotter = Plotter(objective.name, objective.arguments(), epochs, device)
    return sweep


def _auto_space(study: optuna.Study, space: SearchSpace, objective: Objective,
                device: str, enqueue: bool) -> tuple[SearchSpace, dict[str, Any]]:
    """The space with range-test intervals: stored with the study, computed where missing;
    with ``enqueue``, a new study's first trials are the suggested learning rates."""
    from dataclasses import replace

    from sweeps.diagnostics.auto_range import auto_lr_ranges

    ranges = {k: (float(v[0]), float(v[1]))
              for k, v in study.user_attrs.get(LR_RANGES_ATTR, {}).items()}
    missing = tuple(o for o in space.optimizers if o not in ranges)
    tests: dict[str, Any] = {}
    if missing:
        found = auto_lr_ranges(objective, missing, device=device)
        ranges.update(found.ranges)
        tests = dict(found.tests)
        study.set_user_attr(LR_RANGES_ATTR, {k: list(v) for k, v in ranges.items()})
        if enqueue and not study.trials:  # a new study starts at the suggestions
            for name, lr in found.suggested.items():
                study.enqueue_trial({"optimizer": name, f"lr_{name}": lr},
                                    skip_if_exists=True)
    return replace(space, lr_ranges=ranges), tests


def _log_range_tests(tracker: StudyTracker, run_id: str, tests: dict[str, Any]) -> None:
    """Each range test's curve (PNG) and numbers (CSV) on the parent run, under lr_range/."""
    import tempfile
    from pathlib import Path

    from sweeps.diagnostics.range_test import plot_range_test

    with tempfile.TemporaryDirectory() as folder:
        for name, result in tests.items():
            plot_range_test(result, Path(folder) / f"{name}.png")
            result.to_frame().to_csv(Path(folder) / f"{name}.csv", index=False)
        tracker.client.log_artifacts(run_id, folder, "lr_range")
