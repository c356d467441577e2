"""Successive halving in lockstep: the default pruner (``--pruner halving``).

A trial is judged at rungs: after ``first`` epochs, then ``reduction`` times as many, and so
on (``rung_epochs``). At a rung it competes with every trial of the study that reached the
same rung, whatever that trial's state: finished, pruned later, failed later, or still
running. The rows of a stack report a rung's value before any of them is judged
(``sweeps.training.loop.Observer.on_report``), so the trials that train side by side prune
each other at once, as a careful user's one-at-a-time loop prunes each trial against the ones
before it. A trial survives a rung if fewer than ``reduction`` trials reached it, or if it is
among the best ``ceil(n / reduction)`` of the ``n`` that did; a value that is not finite is
worse than any that is.

This is Optuna's asynchronous successive halving (``SuccessiveHalvingPruner``) with two
differences: the competitors are read from the trials' intermediate values at the rung's
step, so that a rung's decisions do not depend on which row of a stack asks first, and the
first rung comes from the objective (``prune_warmup``), not from the first trial's steps.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["LockstepHalving", "rung_epochs"]


def rung_epochs(first: int, epochs: int, reduction: int) -> list[int]:
    """Epochs run at each rung: ``first``, ``first * reduction``, ... below ``epochs``."""
    rungs = []
    rung = max(1, first)
    while rung < epochs:
        rungs.append(rung)
        rung *= reduction
    return rungs


class LockstepHalving(optuna.pruners.BasePruner):
    """Prunes at ``rung_epochs(first, epochs, reduction)``; see the module docstring.

    Intermediate values are reported at the end of chunks of epochs (step = the chunk's last
    epoch); a rung is judged at the first report at or past it, which is the same step for
    every trial of a study (they share the epochs and the chunk length)."""

    def __init__(self, first: int, epochs: int, reduction: int = 3) -> None:
        if reduction < 2:
            raise ValueError(f"reduction must be at least 2, got {reduction}")
        self.reduction = reduction
        self.rungs = rung_epochs(first, epochs, reduction)

    def rung_at(self, reported: list[int]) -> int | None:
        """The rung (epochs) that the last of the ``reported`` steps judges, if any."""
        step = reported[-1]
        before = reported[-2] if len(reported) > 1 else -1
        return next((r for r in self.rungs if before < r - 1 <= step), None)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        reported = sorted(trial.intermediate_values)
        if not reported or self.rung_at(reported) is None:
            return False
        step = reported[-1]
        mine = _score(trial.intermediate_values[step], study.direction)
        field = [_score(t.intermediate_values[step], study.direction)
                 for t in study.get_trials(deepcopy=False)
                 if t.number != trial.number and step in t.intermediate_values]
        if len(field) + 1 < self.reduction:
            return False
        keep = math.ceil((len(field) + 1) / self.reduction)
        return sum(other < mine for other in field) >= keep


def _score(value: float, direction: optuna.study.StudyDirection) -> float:
    """Lower is better; not finite is worst."""
    if not math.isfinite(value):
        return math.inf
    return value if direction == optuna.study.StudyDirection.MINIMIZE else -value
