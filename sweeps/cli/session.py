"""A sweep with everything around it, put together: the objective, the study, MLflow tracking
with the study's parent run, and the plots. The one place where the study and tracking meet."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from objectives import Objective
    from sweeps.cli.parent_run import ParentRun
    from sweeps.cli.sweep_plots import SweepPlots
    from sweeps.study.config import SweepConfig
    from sweeps.study.space import SearchSpace
    from sweeps.study.sweep import Sweep, refill_unit
    from tracking.study_run import StudyTracker

__all__ = ["SweepSession", "open_session", "run_helper"]

log = logging.getLogger(__name__)


@dataclass
class SweepSession:
    config: SweepConfig
    sweep: Sweep
    tracker: StudyTracker
    parent: ParentRun
    storage: BaseStorage  # the study's, as opened (see ``close_stores``)
    plots: SweepPlots | None  # None: --no-plots

    def finish(self, status: str) -> None:
        """Close every run, the parent run last (with the plots)."""
        try:
            self.parent.finish(status, storage_url=self.config.storage, plots=self.plots,
                               export=self.config.export)
        finally:
            if self.plots is not None:
                self.plots.close()
                self.plots = None

    def close_stores(self) -> None:
        """Close the database connections of the study and of MLflow now, rather than
        whenever the interpreter frees them (a SQLite file then holds everything, its
        write-ahead log folded in). They reopen if used again."""
        from sweeps.storage.backends import dispose_engine
        from tracking.study_run import close_store

        close_store(self.tracker.client)
        dispose_engine(self.storage)


def open_session(config: SweepConfig) -> SweepSession:
    """Everything a sweep needs, checked before anything is written."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from mlflow import MlflowClient

    from objectives import build
    from sweeps.batched.sizing import for_study
    from sweeps import checks
    from sweeps.checks import resolve_device
    from sweeps.cli.parent_run import ParentRun
    from sweeps.cli.sweep_plots import SweepPlots
    from sweeps.storage.backends import absolute_uri, open_storage
    from sweeps.study.goals import study_goals
    from sweeps.study.samplers import MULTI_OBJECTIVE
    from sweeps.study.metric import reported_metrics
    from sweeps.study.opening import auto_space, log_intervals, open_study, search_space
    from sweeps.study.reaper import reap_stale
    from sweeps.study.sweep import Sweep, refill_unit
    from sweeps.training.precision import at_precision
    from tracking.preflight import check_tracking
    from tracking.study_run import StudyTracker

    objective = build(config.objective, config.objective_args)
    epochs = config.epochs or objective.default_epochs
    device = resolve_device(config.device)
    checks.check_precision(config.precision, device)
    objective = at_precision(objective, config.precision)
    check_tracking(config.tracking_uri)
    space = search_space(config, epochs, objective)
    goals = study_goals(config.metric, config.direction, config.metric_at, config.constraints,
                        reported_metrics(objective, torch.device(device)))
    if goals.multi:
        checks.choice("sampler", config.sampler, MULTI_OBJECTIVE)
    storage = open_storage(config.storage)
    study = open_study(config, objective, epochs, goals, space, storage)
    tracking_uri = absolute_uri(config.tracking_uri, create_folder=True)
    with ThreadPoolExecutor(1) as pool:
        # MLflow opens its store (a new one: its tables) on the other core meanwhile
        client = pool.submit(MlflowClient, tracking_uri=tracking_uri)
        tests: dict[str, Any] = {}
        if space.lr_source == "auto":
            space, tests = auto_space(study, space, objective, device,
                                      enqueue=config.sampler != "grid")
        log_intervals(space)
        choice = for_study(study, objective, config.batch, epochs, device, config.per_tensor,
                           config.log_steps)
        tracker = StudyTracker(client.result(), config.experiment_name, config.log_every,
                               metrics_db=config.tracking_db and absolute_uri(
                                   config.tracking_db, create_folder=False))
    parent = ParentRun(tracker, study, {**_parent_params(config, space, objective, epochs),
                                        **goals.params(),
                                        "torch_threads": torch.get_num_threads()}, config.seed)
    if tests:
        parent.log_range_tests(tests)
    log.info("%s", choice.describe())
    parent.tag({"trial_batch": str(choice.size), "trial_batch_width": str(choice.width),
                "trial_batch_reason": choice.describe()})
    sweep = Sweep(config, objective, epochs, device, study, goals, space, tracker,
                  batching=choice, refill_unit=refill_unit(config.batch))
    reap_stale(study, tracker, close_orphan_runs=True)
    plots = None
    if config.plots:
        plots = SweepPlots(objective.name, objective.arguments(), epochs, device,
                           config.precision)
        plots.attach(sweep)
    return SweepSession(config, sweep, tracker, parent, storage, plots)


def run_helper(config: SweepConfig) -> None:
    """A helper worker's part of the sweep (``sweeps.parallel.workers``, which turns its plots
    off): its trials until the study holds its target, and nothing else. The main process
    measured the batch (the helper reads the choice from the study), draws the plots, trains
    their reference run and closes the parent run."""
    from sweeps.cli.common import setup_logging

    setup_logging(True)  # the main process shows progress and the summary
    session = open_session(config)
    try:
        session.sweep.run()
    finally:
        session.tracker.close()


def _parent_params(config: SweepConfig, space: SearchSpace, objective: Objective,
                   epochs: int) -> dict[str, Any]:
    return {**space.describe(), "sampler": config.sampler, "pruner": config.pruner,
            "seed": config.seed, "n_trials": config.n_trials, "epochs": epochs,
            "precision": config.precision,
            "objective": objective.name,
            **{f"objective.{k}": v for k, v in objective.arguments().items()}}
