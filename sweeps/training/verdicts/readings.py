"""What the rules read off a run's per-epoch statistics: its first and last loss, the share of
it that fell, the median update ratio, and the noise of the first loss (one batch's)."""

from __future__ import annotations

import math

import numpy as np

from sweeps.training.stats import EpochStats
from sweeps.training.verdicts.thresholds import Thresholds

__all__ = ["ends", "fall_fraction", "finite_median", "median_ratio", "start_noise"]


def ends(stats: EpochStats) -> tuple[float, float]:
    """The first and the last loss of the run."""
    return stats.first_loss, float(stats.loss[-1])


def fall_fraction(stats: EpochStats) -> float:
    """Fraction by which the loss fell over the run (negative if it rose; 1.0 if both are 0)."""
    first, last = ends(stats)
    if first == 0:
        return 1.0 if last == 0 else -math.inf
    return (first - last) / abs(first)


def median_ratio(stats: EpochStats) -> float:
    """The median of the run's finite update ratios."""
    return finite_median(stats.update_ratio)


def finite_median(values: np.ndarray) -> float:
    """Median of the finite values (0.0 if none is finite)."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else 0.0


def start_noise(stats: EpochStats, t: Thresholds) -> float:
    """The noise of the first loss (one batch's): epoch 0's spread of step losses, at most
    ``start_noise`` of the loss; 0 where the spread is not recorded (full-batch)."""
    if stats.loss_std is None or not len(stats) or not math.isfinite(stats.loss_std[0]):
        return 0.0
    return min(float(stats.loss_std[0]), t.start_noise * abs(stats.first_loss))
