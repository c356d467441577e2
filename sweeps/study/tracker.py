"""What a sweep asks of experiment tracking, as protocols.

The study knows nothing of MLflow: the run command hands it a tracker
(``tracking.StudyTracker`` is the one it uses) and the sweep calls only what is named here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from sweeps.training.loop import Observer

if TYPE_CHECKING:
    import torch

__all__ = ["RunState", "SweepTracker", "TrialRecord"]

# How a tracked run ended: a trial's outcome, or ``interrupted`` (killed, signalled).
RunState = str  # "complete", "pruned", "failed" or "interrupted"

Evaluate = Callable[[dict[str, "torch.Tensor"]], dict[str, float]]


class TrialRecord(Observer, Protocol):
    """One trial's tracked run: an observer of its training, closed with its outcome."""

    run_id: str

    @property
    def closed(self) -> bool:
        """True once the run's outcome is written and the run ended (``close`` returned)."""

    def close(self, state: RunState, tags: dict[str, str], metrics: dict[str, float]) -> None:
        """Log the outcome and set the run's terminal state now."""


class SweepTracker(Protocol):
    """The study's runs: one per trial, nested under the study's parent run."""

    def start_trial(self, number: int, params: dict[str, Any], tags: dict[str, str], *,
                    late_tags: Mapping[str, str], evaluate: Evaluate | None) -> TrialRecord:
        """A run for trial ``number``. ``late_tags`` is read when the run closes (tags the
        reporter adds while the trial runs); ``evaluate`` gives extra metrics of the final
        parameters."""

    def flush(self) -> None:
        """Return once every queued metric is written and every ended run is closed."""

    @property
    def failure(self) -> str | None:
        """Why tracking stopped working, if it did (the sweep then stops)."""

    def end_run(self, run_id: str, state: RunState) -> None:
        """Close a run whose trial another process left behind."""

    def end_orphan_runs(self, state_of: Callable[[str], RunState | None]) -> None:
        """Close runs still open whose trial has ended: ``state_of(trial_number)`` says how
        it ended (None: still running, or not a trial of this study)."""
