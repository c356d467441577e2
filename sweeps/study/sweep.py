"""The sweep: ask Optuna for trials, train them (batched where possible), tell the outcomes.

Everything around it is handed in: the tracker that records each trial's run
(``sweeps.study.tracker``), listeners that hear of finished trials (progress, plots), and
riders, runs that are not trials but train in a batch beside them.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sweeps.study.reaper import reap_stale
from sweeps.study.results import (
    INTERRUPTED_ATTR,
    RUN_ID_ATTR,
    STACK_ATTR,
    VIOLATION_ATTR,
    counted_trials,
    outcome_attrs,
)

if TYPE_CHECKING:
    import optuna

    from objectives import Objective
    from sweeps.batched.sizing import BatchChoice
    from sweeps.batched.trials import Joiners
    from sweeps.study.config import SweepConfig
    from sweeps.study.goals import Goals
    from sweeps.study.interrupts import Started
    from sweeps.study.metric import StudyMetric
    from sweeps.study.prune_view import PruneView
    from sweeps.study.space import SearchSpace
    from sweeps.study.tracker import SweepTracker
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import Observer, TrainResult
    from sweeps.training.stats import EpochStats

__all__ = ["Rider", "Sweep", "SweepListener", "TrackingFailed", "TrialOutcome", "refill_unit"]

log = logging.getLogger(__name__)


class TrackingFailed(RuntimeError):
    """Tracking could not be written to: the sweep stops after the trials in hand (their
    results are in Optuna) and can be resumed with the same command."""


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    hparams: Hyperparams
    result: TrainResult
    value: float | None  # the study's (first) metric, as told to Optuna (None: not complete)
    run_id: str  # the trial's tracked run
    counted: int  # finished trials that count towards the target, this one included


class SweepListener:
    """Hears of a sweep's trials. Override what you need."""

    def observer(self) -> Observer | None:
        """An observer of every trial of the next batch (None: none)."""
        return None

    def trial_done(self, outcome: TrialOutcome) -> None:
        """A trial ended and Optuna has been told."""


@dataclass
class Rider:
    """A run that is not a trial (the plots' reference run), trained as one more row of the
    sweep's next batch, where it is nearly free."""

    hparams: Hyperparams
    history: EpochStats | None = None


@dataclass
class Sweep:
    config: SweepConfig
    objective: Objective
    epochs: int
    device: str
    study: optuna.Study
    goals: Goals
    space: SearchSpace
    tracker: SweepTracker
    listeners: list[SweepListener] = field(default_factory=list)
    riders: list[Rider] = field(default_factory=list)
    batching: BatchChoice | None = None  # trials at a time and rows a stack
    # (sweeps.batched.sizing); None: config.batch trials as one stack
    refill_unit: int | None = None  # start new trials beside a running batch once this
    # many of its rows have ended (as many as ended); None: a batch runs to its end first
    _counted: int = field(default=0, init=False)  # finished trials counted, as last read
    _replaced: int = field(default=0, init=False)  # rows of this batch ended and replaced
    _deadline: float | None = field(default=None, init=False)  # the timeout, as monotonic
    _started_at: dict[int, float] = field(default_factory=dict, init=False)  # by trial number
    _ended: dict[int, dict[str, float]] = field(default_factory=dict, init=False)  # the end
    # metrics (costs, test scores) of trials whose runs closed, until Optuna is told
    _param_count: int | None = field(default=None, init=False)

    @property
    def metric(self) -> StudyMetric:
        """The (first) metric the study optimises."""
        return self.goals.primary

    def run(self) -> None:
        """Run trials, ``batching.size`` at a time, until the study holds its target of
        finished trials (or the timeout passes)."""
        self._deadline = (time.monotonic() + self.config.timeout if self.config.timeout
                          else None)
        while True:
            reap_stale(self.study, self.tracker)
            if self._past_deadline():
                log.info("timeout reached; the study can be resumed with the same command")
                return
            trials = self._ask(self._next_batch_size())
            if not trials:
                return
            self.run_trials(trials)
            if self.tracker.failure is not None:
                raise TrackingFailed(self.tracker.failure)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    def _refill(self, ended: int) -> list[optuna.Trial]:
        """Trials to start beside the running batch, of which ``ended`` rows have ended: as
        many as ended since the last ones started, once at least ``refill_unit`` have,
        within the target and before the timeout. The sampler has heard of every trial told
        so far."""
        if not self._refill_due(ended):
            return []
        due = ended - self._replaced
        self._replaced = ended
        size = min(due, self._next_batch_size())
        return self._ask(size) if size > 0 else []

    def _refill_due(self, ended: int) -> bool:
        """At least ``refill_unit`` rows ended since the last trials joined, before the
        timeout."""
        return (self.refill_unit is not None and ended - self._replaced >= self.refill_unit
                and not self._past_deadline())

    def _next_batch_size(self) -> int:
        """Trials to start now: the target less the finished and the running ones, at most
        a batch, at most this worker's share of the unfinished ones (so that no worker of
        ``--workers`` waits idle while another holds trials it could run), and never past
        the end of a grid."""
        from optuna.trial import TrialState

        from sweeps.study.samplers import grid_points_left

        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        unfinished = self.config.n_trials - len(counted_trials(self.study))
        share = -(-unfinished // self.config.workers)
        batch = self.batching.size if self.batching is not None else self.config.batch
        size = min(batch, share, unfinished - len(running))
        if self.config.sampler == "grid":
            size = min(size, grid_points_left(self.study, self.space))
        return size

    def _ask(self, n: int) -> list[optuna.Trial]:
        """Up to ``n`` new trials; fewer where other workers already fill the target (the
        surplus trial is discarded)."""
        from optuna.trial import TrialState

        live = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        trials: list[optuna.Trial] = []
        for _ in range(n):
            trial = self.study.ask()
            ahead = [t for t in self.study.get_trials(deepcopy=False, states=live)
                     if t.number < trial.number and INTERRUPTED_ATTR not in t.user_attrs]
            if len(ahead) >= self.config.n_trials:
                trial.set_user_attr(INTERRUPTED_ATTR, "surplus")
                self.study.tell(trial, state=TrialState.FAIL)
                break
            trials.append(trial)
        return trials

    def run_trials(self, trials: list[optuna.Trial]) -> list[TrainResult]:
        """Run ``trials`` (and the riders still to run) as one batch. Optuna hears of each
        trial once it has ended and its run is closed: during the batch for a trial that
        ends early (pruned, failed), at the next chunk of statistics after its run closed."""
        from sweeps.batched.trials import Joiners, train_batch
        from sweeps.study.interrupts import settle
        from sweeps.study.prune_view import PruneView

        view = PruneView(self.study)
        self._counted = len(counted_trials(self.study))
        self._replaced = 0
        riders = [r for r in self.riders if r.history is None]
        started: list[Started] = []
        asked = list(trials)  # and the trials that join the batch: each started in turn
        ended: list[tuple[Started, TrainResult]] = []  # Optuna not told yet
        told: set[int] = set()  # trial numbers Optuna was told

        def tell_closed() -> None:
            closed = [e for e in ended if e[0].record.closed]
            for item in sorted(closed, key=lambda e: e[0].trial.number):
                ended.remove(item)
                told.add(item[0].trial.number)
                self._tell_result(*item)

        def on_result(i: int, result: TrainResult) -> None:
            ended.append((started[i], result))
            tell_closed()

        def on_stacks(groups: list[list[int]]) -> None:
            record_stacks(groups, started[:len(trials)], [r.hparams for r in riders])

        shared = tuple(o for o in (lr.observer() for lr in self.listeners) if o is not None)
        teller = _Teller(tell_closed)

        def observers(new: list[Started]) -> list[tuple[Observer, ...]]:
            # the run's record first: MLflow holds every epoch Optuna was told of, even when
            # a signal ends the sweep between the two
            return [(s.record, s.reporter, *shared, teller) for s in new]

        def ask(rows_ended: int) -> Joiners | None:
            if not self._refill_due(rows_ended):
                return None
            self.tracker.flush()  # every ended trial told first: the sampler hears the same
            tell_closed()  # trials whatever the speed of the tracking, so the study repeats
            fresh = self._refill(rows_ended)
            if not fresh:
                return None
            asked.extend(fresh)  # in the order they start: the unstarted ones are settled
            first = len(started)
            started.extend(self._start(trial, view) for trial in fresh)
            new = started[first:]
            return Joiners([s.hparams for s in new], observers(new),
                           lambda k, result: on_result(first + k, result),
                           lambda groups: record_stacks(groups, new, []))

        try:
            for trial in trials:
                started.append(self._start(trial, view))
            results = train_batch(self.objective, [s.hparams for s in started]
                                  + [r.hparams for r in riders], self.epochs,
                                  device=self.device,
                                  observers=observers(started) + [()] * len(riders),
                                  per_tensor=self.config.per_tensor,
                                  log_steps=self.config.log_steps,
                                  on_result=lambda i, r: on_result(i, r) if i < len(trials)
                                  else None,  # a rider's
                                  width=self.batching.width if self.batching else None,
                                  on_stacks=on_stacks,
                                  ask=ask if self.refill_unit is not None else None)
        except BaseException as exc:
            self.tracker.flush()  # the runs of trials that ended are closed
            settle(self.study, [s for s in started if s.trial.number not in told],
                   asked[len(started):], exc, self._tell_result)
            raise
        # the batch's own rows, trials then riders (joiners' results went to on_result)
        for rider, result in zip(riders, results[len(trials):], strict=True):
            rider.history = result.history
        self.tracker.flush()  # every run is closed before Optuna hears the outcome
        tell_closed()
        return results[:len(trials)]

    def _start(self, trial: optuna.Trial, view: PruneView) -> Started:
        from sweeps.diagnostics.stall import StallWatch
        from sweeps.study.interrupts import Started
        from sweeps.study.reporter import OptunaReporter

        hp = self.space.sample(trial)
        trial.set_user_attr("hparams", hp.to_dict())
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("device", self.device)
        stall = StallWatch(self.epochs) if self.config.prune_stalled else None
        reporter = OptunaReporter(trial, self.epochs, self.metric, view, stall,
                                  prune=not self.goals.multi)
        reporter.heartbeat.beat()
        number = trial.number
        record = self.tracker.start_trial(
            number, self.run_params(hp), {"study": self.study.study_name},
            late_tags=reporter.stopped, evaluate=lambda result: self._end_metrics(number, result))
        trial.set_user_attr(RUN_ID_ATTR, record.run_id)
        self._started_at[number] = time.monotonic()
        return Started(trial, hp, record, reporter)

    def _end_metrics(self, number: int, result: TrainResult) -> dict[str, float]:
        """What trial ``number``'s run logs when it ends, beside its epochs: its wall time and
        epochs (``trial_seconds``, ``trial_epochs``), and the objective's extra metrics (a
        test accuracy) if it is complete; a pruned model is no candidate, and scoring it
        costs as much as an epoch."""
        from objectives import evaluate

        metrics = {"trial_seconds": time.monotonic() - self._started_at.pop(number),
                   "trial_epochs": float(result.epochs_run)}
        if result.status == "complete" and result.params is not None:
            metrics.update(evaluate(self.objective, result.params, result.buffers))
        self._ended[number] = metrics
        return metrics

    def _costs(self, number: int, result: TrainResult) -> dict[str, float]:
        """Trial ``number``'s end metrics (``_end_metrics``, measured now if its run logged
        none) and, where the goals name it, the objective's parameter count."""
        ended = self._ended.pop(number, None)
        if ended is None:
            ended = self._end_metrics(number, result) if number in self._started_at else {}
        if "param_count" in self.goals.costs:
            if self._param_count is None:
                import torch

                params = self.objective.init_params(torch.device("cpu"))
                self._param_count = sum(p.numel() for p in params.values())
            ended["param_count"] = float(self._param_count)
        return ended

    def _tell_result(self, started: Started, result: TrainResult) -> None:
        from optuna.trial import TrialState

        trial, hp = started.trial, started.hparams
        for key, value in outcome_attrs(result).items():
            trial.set_user_attr(key, value)
        state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(
            result.status, TrialState.FAIL)
        ended = self._costs(trial.number, result)
        for key in ("trial_seconds", *(k for k in ended if k.startswith("test_"))):
            if key in ended:
                trial.set_user_attr(key, ended[key])
        values = self.goals.values(result, ended)
        if self.goals.constraints:  # Optuna's samplers that take constraints learn them
            excess = [min(v, sys.float_info.max)
                      for v in self.goals.violations(result, ended)]
            for constraint, value in zip(self.goals.constraints, excess, strict=True):
                trial.set_constraint(str(constraint), value)
            trial.set_user_attr(VIOLATION_ATTR, max(excess))
        value = values[0]
        bad = [(m.name, v) for m, v in zip(self.goals.metrics, values) if not math.isfinite(v)]
        if state == TrialState.COMPLETE and bad:
            trial.set_user_attr("failure", f"non-finite {bad[0][0]} ({bad[0][1]})")
            state = TrialState.FAIL
        self.study.tell(trial, values if state == TrialState.COMPLETE else None, state=state)
        self._counted += 1  # other workers' trials are read at the next batch
        log.info("trial %d %s: %s lr=%.3g %s %s=%.4g", trial.number, result.status,
                 hp.optimizer, hp.lr, hp.scheduler, self.metric.name, value)
        if self.listeners:
            told = value if state == TrialState.COMPLETE else None
            outcome = TrialOutcome(trial.number, hp, result, told, started.record.run_id,
                                   self._counted)
            for listener in self.listeners:
                listener.trial_done(outcome)

    def run_params(self, hp: Hyperparams) -> dict[str, object]:
        """What a trial's run records as params: its hyperparameters (and ``log10_lr``, for
        the MLflow UI's parallel-coordinates view, whose axes are linear) and fixed
        settings."""
        args = {f"objective.{k}": v for k, v in self.objective.arguments().items()}
        return {**hp.to_dict(), "log10_lr": round(math.log10(hp.lr), 4), "epochs": self.epochs,
                "objective": self.objective.name, **args, "seed": self.config.seed,
                "precision": self.config.precision}


def refill_unit(batch: int) -> int | None:
    """Rows of a running batch that end before new trials start beside it: a fifth of the
    batch (trials asked one at a time: none)."""
    return None if batch <= 1 else max(1, batch // 5)


def record_stacks(groups: list[list[int]], started: list[Started],
                  riders: list[Hyperparams]) -> None:
    """Keep with each trial of a stack (``groups``: indices into ``started`` then ``riders``)
    the rows of its stack, by trial number (a rider by its configuration), and torch's
    threads: what ``sweeps.export`` needs to replay the trial (``sweeps.batched.replay``)."""
    import torch

    for group in groups:
        rows = [{"trial": started[b].trial.number} if b < len(started)
                else {"params": riders[b - len(started)].to_dict()} for b in group]
        record = {"rows": rows, "threads": torch.get_num_threads()}
        for b in group:
            if b < len(started):
                started[b].trial.set_user_attr(STACK_ATTR, record)


class _Teller:
    """An observer of every trial of a batch that, at each chunk, tells Optuna the trials
    that have ended since and whose runs are closed."""

    def __init__(self, tell_closed: Callable[[], None]) -> None:
        self.tell_closed = tell_closed

    def on_chunk(self, stats: EpochStats) -> bool:
        self.tell_closed()
        return False

    def on_end(self, result: TrainResult) -> None:
        return None
