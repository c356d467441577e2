"""When each verdict applies: ``Thresholds``, the numbers the rules read, checked when built."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Thresholds"]


@dataclass(frozen=True)
class Thresholds:
    """When each verdict applies. Ratios are ``update_ratio`` values (SPEC section 5)."""

    target_ratio: float = 1e-3  # update ratio a suggested lr aims at (|delta theta| / |theta|)
    stalled_ratio: float = 1e-6  # stalled: median update ratio below this ...
    stalled_change: float = 1e-3  # ... and |relative loss change| over the run below this
    slow_ratio: float = 1e-4  # slow: median update ratio below this ...
    slow_converged: float = 0.99  # ... unless the loss fell by at least this fraction
    slow_improvement: float = 0.1  # slow, whatever the ratio: the loss fell by less than this
    diverge_factor: float = 1e3  # diverged: final loss above this many times the initial loss
    rise_tolerance: float = 0.01  # unstable: final loss above initial * (1 + this)
    oscillation: float = 0.3  # unstable: the loss went up in more than this fraction of epochs
    rise_noise: float = 1e-6  # a rise counts only above this fraction of |initial loss|
    noise_z: float = 3.0  # ... and above this many standard errors of the batches' noise
    start_noise: float = 0.1  # the first loss's noise: epoch 0's spread, at most this part of it
    giveback: float = 0.25  # unstable (mini-batch): the loss climbs back this part of its fall
    recover: float = 0.2  # ... not above its start if it later falls this part below the start
    flat_fall: float = 0.15  # flat: the loss fell less than this fraction of its start, or ...
    chance_tolerance: float = 0.01  # ... a layer is dead or blind and it sits this near ln C
    max_classes: int = 20  # the largest C that chance is looked for at
    memorize: float = 0.1  # memorizing: validation gained less than this part of training's gain
    overfit: float = 0.25  # overfitting: validation gave back more than this part of its gain
    blind_grad: float = 1e-3  # a tensor's mean |grad| below this part of the largest's: blind
    dead_grad: float = 1e-15  # ... below this part (all of the last third): no gradient at all
    explode_growth: float = 1e3  # exploding: mean |grad| grew by this factor in the run, or ...
    explode_ratio: float = 10.0  # ... started at this many times the parameters' mean |theta|

    def __post_init__(self) -> None:
        for name in ("target_ratio", "stalled_ratio", "slow_ratio", "diverge_factor", "noise_z",
                     "blind_grad", "dead_grad", "explode_growth", "explode_ratio"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 but got {value!r}.")
        for name in ("stalled_change", "slow_converged", "slow_improvement", "rise_tolerance",
                     "oscillation", "rise_noise", "start_noise", "giveback", "recover",
                     "flat_fall", "chance_tolerance", "memorize", "overfit"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 but got {value!r}.")
        if not (isinstance(self.max_classes, int) and self.max_classes >= 2):
            raise ValueError(f"max_classes must be an integer >= 2 but got "
                             f"{self.max_classes!r}.")
