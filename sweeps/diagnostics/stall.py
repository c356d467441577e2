"""Hopeless-trial pruning: stop a trial whose diagnosis says more epochs cannot help.

After at least ``window`` epochs, and while epochs remain, each chunk applies three verdict
rules (``sweeps.training.verdicts.rules``) to the epochs run so far, in this order:

- ``diverged``: the loss grew ``diverge_factor`` times its start (a non-finite one already
  fails the trial);
- ``stalled``: median update ratio below ``stalled_ratio`` and the loss changed by less than
  ``stalled_change`` of itself since the first epoch (over a window alone, a trial that has
  converged would look stalled too); the seed's SGD at lr 0.01, for one, would spend its
  remaining epochs where it is;
- ``flat`` (not learning), from a third of the epochs on (at least 5): the loss stays at its
  starting level, or at chance with a dead or blind layer, and does not descend in the last
  third, while the parameters move. (Earlier, a slow start is too easily taken for it.)

The verdict says why (the trial's ``pruned_by`` and ``pruned_reason`` tags). On by default
(``--no-prune-stalled``): ``python -m bench.stall`` measured the stalled rule saving time
without changing the best trial.
"""

from __future__ import annotations

from sweeps.training.loop import Observer
from sweeps.training.stats import EpochStats
from sweeps.training.verdicts import Thresholds, Verdict
from sweeps.training.verdicts.rules import diverged, flat, stalled

__all__ = ["WINDOW_FRACTION", "StallWatch"]

WINDOW_FRACTION = 0.1  # the least part of the epochs run before a trial can be called stalled


class StallWatch(Observer):
    """Asks to stop the trial once the epochs run so far (at least ``window``) are diverged,
    stalled or flat."""

    def __init__(self, epochs: int, thresholds: Thresholds = Thresholds(),
                 window: int | None = None) -> None:
        self.epochs = epochs
        self.window = max(1, window if window is not None else int(WINDOW_FRACTION * epochs))
        self.thresholds = thresholds
        self.verdict: Verdict | None = None  # set when it stops the trial
        self._parts: list[EpochStats] = []

    def on_chunk(self, stats: EpochStats) -> bool:
        if not len(stats):
            return False
        self._parts.append(stats)
        done = stats.start + len(stats)
        if done < self.window or done >= self.epochs:  # too early, or nothing left to save
            return False
        run = EpochStats.concat(self._parts)
        rules = (diverged, stalled, flat) if done >= max(5, self.epochs // 3) else (
            diverged, stalled)
        self.verdict = next((v for v in (rule(run, None, self.thresholds) for rule in rules)
                             if v is not None), None)
        return self.verdict is not None
