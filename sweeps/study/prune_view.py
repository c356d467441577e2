"""Pruning questions for a batch of trials, answered from one read of the study.

``Trial.should_prune`` hands the pruner the live study, and the pruner reads every trial of it
(``MedianPruner``: the completed ones, to take their median). The trials of a batch reach each
pruning check at the same epoch, so a batch of 25 read the whole study 25 times per check;
with Optuna's RDB storage those reads dominated a default sweep. ``PruneView`` reads the study
once per round of checks and gives the pruner a view of it that answers ``get_trials`` from
that read: a report (``stale``) starts a new round, so the read after it sees every value
reported before the rows are judged, and the rows judged together share it. Everything else
(direction, storage, system attributes) is the live study's.
"""

from __future__ import annotations

import copy
from collections.abc import Container
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial, TrialState

__all__ = ["PruneView"]


class PruneView:
    """Shared by the reporters of one batch; reads the study once per round of checks."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self._step: int | None = None
        self._trials: list[FrozenTrial] = []
        self.reads = 0  # how many times the study was read (for tests)

    def stale(self) -> None:
        """A value was reported: the next check reads the study again."""
        self._step = None

    def should_prune(self, trial: optuna.Trial, reported: dict[int, float]) -> bool:
        """The pruner's answer for ``trial``, whose intermediate values are ``reported``."""
        step = max(reported)
        if step != self._step:
            self._trials = self.study.get_trials(deepcopy=False)
            self._step = step
            self.reads += 1
        mine = next((t for t in self._trials if t.number == trial.number), None)
        if mine is None:  # asked before the read could see it: ask the live study
            return bool(trial.should_prune())
        latest = copy.copy(mine)
        latest.intermediate_values = dict(reported)  # the values reported since the read
        as_read = cast("optuna.Study", _StudyAsRead(self.study, self._trials))
        return bool(self.study.pruner.prune(as_read, latest))


class _StudyAsRead:
    """The study, with ``get_trials`` answered from one read."""

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial]) -> None:
        self._study = study
        self._read = trials

    def get_trials(self, deepcopy: bool = True,
                   states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials = [t for t in self._read if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)
