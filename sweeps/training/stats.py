"""Per-epoch training statistics, as typed arrays (SPEC section 5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np

__all__ = ["EPOCH_METRICS", "EpochStats"]

EPOCH_METRICS = ("loss", "grad_abs_mean", "update_abs_mean", "update_ratio", "lr")


@dataclass(frozen=True)
class EpochStats:
    """Statistics of the consecutive epochs ``start, start + 1, ...``.

    For a mini-batch objective each value is the mean over the epoch's steps, and ``extra``
    holds the validation metrics scored after the epoch.
    """

    start: int  # index of the first epoch
    loss: np.ndarray  # loss back-propagated at the epoch
    grad_abs_mean: np.ndarray  # mean |dloss/dtheta| over all trainable elements
    update_abs_mean: np.ndarray  # mean |theta_after - theta_before|
    update_ratio: np.ndarray  # update_abs_mean / mean |theta_before|
    lr: np.ndarray  # learning rate of the first parameter group for the step
    # further per-epoch metrics by name, e.g. val_loss and val_accuracy of mini-batch objectives
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def epochs(self) -> np.ndarray:
        return np.arange(self.start, self.start + len(self))

    @property
    def names(self) -> tuple[str, ...]:
        """Every metric these statistics hold: ``EPOCH_METRICS``, then the extra ones."""
        return EPOCH_METRICS + tuple(self.extra)

    def metric(self, name: str) -> np.ndarray:
        """The values of metric ``name`` (one of ``names``)."""
        return self.extra[name] if name in self.extra else getattr(self, name)

    def head(self, n: int) -> EpochStats:
        """The first ``n`` epochs."""
        return EpochStats(self.start, *(getattr(self, m)[:n] for m in EPOCH_METRICS),
                          extra={k: v[:n] for k, v in self.extra.items()})

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
        keys = list(dict.fromkeys(k for p in parts for k in p.extra))  # a part without one: NaN
        extra = {k: np.concatenate([p.extra.get(k, np.full(len(p), np.nan)) for p in parts])
                 for k in keys}
        return cls(parts[0].start, *(np.concatenate([getattr(p, m) for p in parts])
                                     for m in EPOCH_METRICS), extra=extra)

    @classmethod
    def empty(cls) -> EpochStats:
        return cls(0, *(np.empty(0) for _ in EPOCH_METRICS))

    def to_frame(self):  # type: ignore[no-untyped-def]
        import pandas as pd

        return pd.DataFrame({m: self.metric(m) for m in self.names}, index=self.epochs)


assert tuple(f.name for f in fields(EpochStats))[1:-1] == EPOCH_METRICS
