"""Per-epoch training statistics, as typed arrays (SPEC section 5)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

__all__ = ["EPOCH_METRICS", "EpochStats"]

EPOCH_METRICS = ("loss", "grad_abs_mean", "update_abs_mean", "update_ratio", "lr")


@dataclass(frozen=True)
class EpochStats:
    """Statistics of the consecutive epochs ``start, start + 1, ...``."""

    start: int  # index of the first epoch
    loss: np.ndarray  # loss back-propagated at the epoch
    grad_abs_mean: np.ndarray  # mean |dloss/dtheta| over all trainable elements
    update_abs_mean: np.ndarray  # mean |theta_after - theta_before|
    update_ratio: np.ndarray  # update_abs_mean / mean |theta_before|
    lr: np.ndarray  # learning rate of the first parameter group for the step

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def epochs(self) -> np.ndarray:
        return np.arange(self.start, self.start + len(self))

    def head(self, n: int) -> EpochStats:
        """The first ``n`` epochs."""
        return EpochStats(self.start, *(getattr(self, m)[:n] for m in EPOCH_METRICS))

    def first_nonfinite(self) -> tuple[int, str] | None:
        """(epoch, metric) of the first non-finite loss or gradient, or None."""
        bad_loss = ~np.isfinite(self.loss)
        bad = bad_loss | ~np.isfinite(self.grad_abs_mean)
        if not bad.any():
            return None
        offset = int(np.argmax(bad))
        return self.start + offset, "loss" if bad_loss[offset] else "gradient"

    @classmethod
    def concat(cls, parts: list[EpochStats]) -> EpochStats:
        if not parts:
            return cls.empty()
        return cls(parts[0].start, *(np.concatenate([getattr(p, m) for p in parts])
                                     for m in EPOCH_METRICS))

    @classmethod
    def empty(cls) -> EpochStats:
        return cls(0, *(np.empty(0) for _ in EPOCH_METRICS))

    def to_frame(self):  # type: ignore[no-untyped-def]
        import pandas as pd

        return pd.DataFrame({m: getattr(self, m) for m in EPOCH_METRICS}, index=self.epochs)


assert tuple(f.name for f in fields(EpochStats))[1:] == EPOCH_METRICS
