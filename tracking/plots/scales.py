"""When an axis of a plot is worth a log scale."""

from __future__ import annotations

import numpy as np

__all__ = ["spans_decades"]


def spans_decades(values: np.ndarray) -> bool:
    """True if ``values`` are all positive and span more than a decade: worth a log axis."""
    return bool(len(values)) and float(values.min()) > 0 \
        and float(values.max()) > 10 * float(values.min())
