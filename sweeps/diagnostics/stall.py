"""Stalled-trial pruning: stop a trial whose parameters have not moved since it started.

After at least ``window`` epochs, and while epochs remain, each chunk applies the ``stalled``
verdict rule (``sweeps.verdicts``) to the epochs run so far: median update ratio below
``stalled_ratio`` and the loss changed by less than ``stalled_change`` of itself since the
first epoch. (Over a window alone, a trial that has converged would look stalled too.) Such
a trial, the seed's SGD at lr 0.01 for one, would spend its remaining epochs where it is; the
verdict says why and by how much to raise the lr. On by default (``--no-prune-stalled``):
``python -m bench.stall`` measured it saving time without changing the best trial.
"""

from __future__ import annotations

from sweeps.training.loop import Observer
from sweeps.training.stats import EpochStats
from sweeps.training.verdicts import Thresholds, Verdict, stalled

__all__ = ["WINDOW_FRACTION", "StallWatch"]

WINDOW_FRACTION = 0.1  # the least part of the epochs run before a trial can be called stalled


class StallWatch(Observer):
    """Asks to stop the trial once the epochs run so far (at least ``window``) are stalled."""

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
        self.verdict = stalled(EpochStats.concat(self._parts), None, self.thresholds)
        return self.verdict is not None
