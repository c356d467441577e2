"""Optuna's side of a running trial: intermediate values, heartbeat, pruning."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeps.study.reaper import Heartbeat
from sweeps.training.loop import Observer

if TYPE_CHECKING:
    import optuna

    from sweeps.diagnostics.stall import StallWatch
    from sweeps.study.metric import StudyMetric
    from sweeps.study.prune_view import PruneView
    from sweeps.training.loop import TrainResult
    from sweeps.training.stats import EpochStats

__all__ = ["PRUNE_CHECKS", "OptunaReporter"]

PRUNE_CHECKS = (0.2, 0.4, 0.6, 0.8)  # fractions of the epochs at which the pruner is asked


class OptunaReporter(Observer):
    """Reports the study's metric at each chunk's last epoch as an intermediate value, keeps
    the trial's heartbeat fresh, stops a stalled trial (with ``stall``), and asks the pruner
    at its rungs if it has them (``LockstepHalving.rungs``), else at ``PRUNE_CHECKS``
    fractions of the epochs (each question reads every trial of the study: ``PruneView``
    shares one read among a batch). The value is reported in ``on_report``, which a stack
    calls for every row before it asks any row's ``on_chunk``: rows compete in lockstep.
    Without ``prune`` (a study of several metrics, which Optuna neither hears intermediate
    values of nor prunes) it only keeps the heartbeat and watches for a stall."""

    def __init__(self, trial: optuna.Trial, epochs: int, metric: StudyMetric, view: PruneView,
                 stall: StallWatch | None = None, prune: bool = True) -> None:
        self.trial = trial
        self.metric = metric
        self.stall = stall
        self.stopped: dict[str, str] = {}  # why the reporter stopped the trial, if it did
        self.heartbeat = Heartbeat(trial)
        self.result: TrainResult | None = None
        self.prune = prune
        rungs = getattr(trial.study.pruner, "rungs", None)
        self.checks = (list(rungs) if rungs is not None
                       else sorted({max(1, int(f * epochs)) for f in PRUNE_CHECKS}))
        if not prune:
            self.checks = []
        self.view = view  # shared by the batch: one read of the study per check
        self.reported: dict[int, float] = {}

    def on_end(self, result: TrainResult) -> None:
        self.result = result

    def on_report(self, stats: EpochStats) -> None:
        step = stats.start + len(stats) - 1
        if self.prune and len(stats) and step not in self.reported:
            value = self.metric.latest(stats)
            self.trial.report(value, step=step)
            self.reported[step] = value
            self.view.stale()

    def on_chunk(self, stats: EpochStats) -> bool:
        self.heartbeat.beat()
        if not len(stats):
            return False
        self.on_report(stats)
        done = stats.start + len(stats)
        if self.stall is not None and self.stall.on_chunk(stats):
            assert self.stall.verdict is not None
            self.stopped.update(pruned_by=self.stall.verdict.name,
                                pruned_reason=self.stall.verdict.reason)
            for key, text in self.stopped.items():
                self.trial.set_user_attr(key, text)
            return True
        if not self.checks or done < self.checks[0]:
            return False
        self.checks = [c for c in self.checks if c > done]
        return self.view.should_prune(self.trial, self.reported)
