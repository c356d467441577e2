"""What a person watching the terminal sees: trials done / target with the best so far and an
ETA, and the epochs of the running trial (or batch).

Drawn with ``rich`` on stderr, only when stderr is a terminal and ``--quiet`` is not given;
log records then go through the same console so they do not break the bars.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from sweeps.study.metric import StudyMetric
from sweeps.study.sweep import SweepListener, TrialOutcome
from sweeps.training.loop import Observer
from sweeps.training.stats import EpochStats

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["SweepProgress", "interactive"]


def interactive(quiet: bool) -> bool:
    """True if progress bars should be drawn."""
    return not quiet and sys.stderr.isatty()


class _EpochTicker(Observer):
    def __init__(self, progress: SweepProgress) -> None:
        self.progress = progress

    def on_chunk(self, stats: EpochStats) -> bool:
        self.progress.epochs_done(stats.start + len(stats))
        return False


class SweepProgress(SweepListener):
    """Progress of a sweep; a no-op when ``enabled`` is False."""

    def __init__(self, target: int, done: int, epochs: int, enabled: bool,
                 metric: StudyMetric = StudyMetric()) -> None:
        self.enabled = enabled
        self.metric = metric
        self.best: tuple[float, str] | None = None
        self._progress: Progress | None = None
        if not enabled:
            return
        from rich.console import Console
        from rich.logging import RichHandler
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self._trials: TaskID = self._progress.add_task("trials", total=target, completed=done)
        self._epochs: TaskID = self._progress.add_task("epochs", total=epochs)
        root = logging.getLogger()
        self._handlers = root.handlers[:]
        root.handlers = [RichHandler(console=console, show_path=False, show_time=False)]
        self._progress.start()

    def observer(self) -> Observer:
        """An observer that advances the epoch bar of the running trial(s)."""
        return _EpochTicker(self)

    def epochs_done(self, epochs: int) -> None:
        if self._progress is not None:
            self._progress.update(self._epochs, completed=epochs)

    def trial_done(self, outcome: TrialOutcome) -> None:
        value, hp = outcome.value, outcome.hparams
        if value is not None and (self.best is None or self.metric.better(value, self.best[0])):
            self.best = (value, f"{hp.optimizer} lr={hp.lr:.3g} {hp.scheduler}")
        self.set_done(outcome.counted)

    def set_done(self, done: int) -> None:
        if self._progress is None:
            return
        text = "trials"
        if self.best is not None:
            text = f"trials (best {self.metric.name} {self.best[0]:.3g}: {self.best[1]})"
        self._progress.update(self._trials, completed=done, description=text)
        self._progress.reset(self._epochs)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.remove_task(self._epochs)  # no trial runs any more
            self._progress.stop()
            logging.getLogger().handlers = self._handlers
            self._progress = None
