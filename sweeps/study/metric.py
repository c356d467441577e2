"""The metric a study optimises: its name, its direction, and the epoch it is read at.

Any per-epoch metric the objective reports can be named: the training statistics
(``loss``, ``grad_abs_mean``, ...) and, for an objective with validation data, its
``val_loss`` and ``val_<metric>``. The default is ``val_loss`` where the objective has it
(training loss rewards overfitting), else ``loss`` (the seed ``rebalance``). Metrics scored
once at the end (``test_accuracy``) are not offered: a study that chose by the test set would
leave nothing held out to report.

The value of a trial is read at its **last** epoch by default: it is what the exported
configuration gives when re-run for the same epochs, so the exported value is reproducible.
``best`` takes the best epoch instead (a trial that overfits late still scores its peak, but
its final parameters are not the ones that scored it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sweeps import checks

if TYPE_CHECKING:
    import torch

    from objectives import Objective
    from sweeps.training.loop import TrainResult
    from sweeps.training.stats import EpochStats

__all__ = ["DIRECTIONS", "READ_AT", "StudyMetric", "default_direction", "reported_metrics",
           "study_metric"]

DIRECTIONS = ("minimize", "maximize")
READ_AT = ("last", "best")
MAXIMISED_SUFFIXES = ("accuracy",)  # a metric named like this defaults to maximize


@dataclass(frozen=True)
class StudyMetric:
    name: str = "loss"
    direction: str = "minimize"
    at: str = "last"  # the epoch a trial's value is read at: last or best

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def better(self, value: float, than: float) -> bool:
        """True if ``value`` is better than ``than`` in this metric's direction."""
        return value > than if self.maximize else value < than

    def settings(self) -> dict[str, str]:
        """As a study's fixed settings (a study is resumed only with the same metric)."""
        return {"metric": self.name, "direction": self.direction, "metric_at": self.at}

    def latest(self, stats: EpochStats) -> float:
        """The metric at the last epoch of ``stats`` (what the pruner hears each chunk)."""
        return float(stats.metric(self.name)[-1])

    def value(self, result: TrainResult) -> float:
        """A finished trial's value: at its last or its best epoch."""
        if self.name == "loss":  # the loop's own final and best loss (after the last step)
            return result.final_loss if self.at == "last" else result.best_loss
        values = result.history.metric(self.name)
        if self.at == "last":
            return float(values[-1]) if len(values) else math.nan
        import numpy as np

        finite = values[np.isfinite(values)]
        if not len(finite):
            return math.nan
        return float(finite.max() if self.maximize else finite.min())


def default_direction(name: str) -> str:
    """``maximize`` for a metric named like an accuracy, ``minimize`` otherwise."""
    return "maximize" if name.endswith(MAXIMISED_SUFFIXES) else "minimize"


def reported_metrics(objective: Objective, device: torch.device) -> tuple[str, ...]:
    """The per-epoch metrics ``objective`` reports: the training statistics, and for a
    mini-batch objective the names its ``validate`` returns (one validation pass of its
    initial parameters, in eval mode)."""
    from objectives import is_minibatch
    from sweeps.training.stats import EPOCH_METRICS

    if not is_minibatch(objective):
        return EPOCH_METRICS
    params = objective.init_params(device)
    return EPOCH_METRICS + tuple(objective.validate(params, objective.start_trial(device)))


def study_metric(name: str | None, direction: str | None, at: str,
                 reported: tuple[str, ...]) -> StudyMetric:
    """The metric a sweep optimises, checked against the ones the objective reports;
    ``None`` picks the defaults."""
    if name is None:
        name = "val_loss" if "val_loss" in reported else "loss"
    checks.choice("metric", name, reported)
    if direction is None:
        direction = default_direction(name)
    checks.choice("direction", direction, DIRECTIONS)
    checks.choice("metric-at", at, READ_AT)
    return StudyMetric(name, direction, at)

