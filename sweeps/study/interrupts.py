"""A batch that did not end by itself (Ctrl-C, SIGTERM, an objective that cannot start):
what Optuna and the tracked runs are told about each of its trials."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sweeps.study.results import INTERRUPTED_ATTR

if TYPE_CHECKING:
    import optuna

    from sweeps.study.reporter import OptunaReporter
    from sweeps.study.tracker import TrialRecord
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import TrainResult

__all__ = ["Started", "settle"]


@dataclass(frozen=True)
class Started:
    """A trial whose run has started."""

    trial: optuna.Trial
    hparams: Hyperparams
    record: TrialRecord
    reporter: OptunaReporter


def settle(study: optuna.Study, started: list[Started], unstarted: list[optuna.Trial],
           exc: BaseException, tell_result: Callable[[Started, TrainResult], None]) -> None:
    """Tell Optuna about the trials of an interrupted batch that it has not heard of:
    ``started`` ones and ``unstarted`` ones (asked, interrupted before their runs started).
    A trial that ended before the interruption keeps its result; the others are FAIL and
    not counted (once the objective is fixed, the same command runs them again), their runs
    KILLED, or FAILED if the objective could not start. The caller has flushed the
    tracker."""
    from optuna.trial import TrialState

    from sweeps.training.loop import ObjectiveStartError

    for trial_started in started:
        if trial_started.reporter.result is not None:
            tell_result(trial_started, trial_started.reporter.result)
            continue
        trial, record = trial_started.trial, trial_started.record
        if isinstance(exc, ObjectiveStartError):
            record.close("failed", {"state": "failed", "failure_reason": str(exc),
                                    "failure_epoch": "0"}, {})
            trial.set_user_attr("failure", str(exc))
            trial.set_user_attr(INTERRUPTED_ATTR, "objective failed to start")
        else:
            reason = f"interrupted: {type(exc).__name__}"
            record.close("interrupted", {"state": "interrupted", "failure_reason": reason}, {})
            trial.set_user_attr(INTERRUPTED_ATTR, reason)
        study.tell(trial, state=TrialState.FAIL)
    for trial in unstarted:
        trial.set_user_attr(INTERRUPTED_ATTR, f"interrupted: {type(exc).__name__}")
        study.tell(trial, state=TrialState.FAIL)
