"""How big each measurement is: the full suite, or a reduced smoke run (``--quick``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "QUICK", "Sizes"]


@dataclass(frozen=True)
class Sizes:
    overhead_epochs: int = 10_000  # epochs of the single trial timed for tracking overhead
    repeats: int = 5  # interleaved repetitions of each in-process timing; the median is kept
    sweep_trials: int = 50  # trials of the tracked sweep and of the careful baseline
    sweep_epochs: int = 10_000  # epochs per trial of that sweep
    worker_trials: int = 16  # trials of each --workers run
    worker_epochs: int = 10_000  # epochs per trial of each --workers run
    worker_repeats: int = 2  # runs of each --workers command, in turn
    memory_few_trials: int = 10  # the smaller sweep that memory growth with trials compares to
    memory_few_epochs: int = 2_000  # the shorter sweep that memory growth with epochs compares to
    help_repeats: int = 5  # runs of ``sweeps.run --help``; the median is kept
    batch_trials: int = 64  # trials run together by the batched mode, and one after another
    batch_epochs: int = 10_000  # epochs per batched trial


FULL = Sizes()
QUICK = Sizes(
    overhead_epochs=2_000,
    sweep_trials=8,
    sweep_epochs=2_000,
    worker_trials=4,
    worker_epochs=2_000,
    worker_repeats=1,
    memory_few_trials=2,
    memory_few_epochs=500,
    batch_trials=8,
    batch_epochs=2_000,
)
