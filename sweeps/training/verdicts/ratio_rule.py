"""The update-ratio rule: by how much to scale the learning rate for the update ratio
(|delta theta| / |theta| per step) to reach a target, and the advice a verdict gives from it."""

from __future__ import annotations

import math

from sweeps.training.verdicts.thresholds import Thresholds

__all__ = ["lr_advice", "ratio_factor", "ratio_rule"]


def ratio_factor(update_ratio: float, target_ratio: float = 1e-3) -> float:
    """How many times larger the lr should be for the update ratio to reach ``target_ratio``.

    For SGD-like optimizers the update ratio is proportional to the lr; for adaptive ones it
    is roughly lr / |theta|, so the same factor is a first-order rule for both.
    Infinite when the parameters do not move at all.
    """
    return target_ratio / update_ratio if update_ratio > 0 else math.inf


def ratio_rule(lr: float, update_ratio: float, target_ratio: float = 1e-3) -> float:
    """The update-ratio rule: the lr at which ``update_ratio`` (seen at ``lr``) hits the target."""
    return lr * ratio_factor(update_ratio, target_ratio)


def lr_advice(ratio: float, t: Thresholds) -> str:
    """What a verdict advises at update ratio ``ratio``: the factor to the target ratio."""
    factor = ratio_factor(ratio, t.target_ratio)
    if factor > 1:
        return f"try ~{factor:.0e}x larger lr"
    return "the lr is already large: try another optimizer, a schedule or more epochs"
