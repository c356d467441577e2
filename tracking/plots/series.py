"""One run's history as the curve plots read it: a metric against the epoch (``Curve``), from
``EpochStats``, from ``{metric: Curve}`` (read back from MLflow) or from an (epochs, values)
pair."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, Union

import numpy as np

__all__ = ["Curve", "HasEpochs", "History", "series", "tensor_series"]


class Curve(NamedTuple):
    """One metric against the epoch."""

    epochs: np.ndarray
    values: np.ndarray


class HasEpochs(Protocol):
    """``EpochStats`` or anything with ``epochs`` and one array attribute per metric."""

    @property
    def epochs(self) -> np.ndarray: ...


# One run's history: EpochStats-like, {metric: Curve}, or (for one metric) an (epochs, values)
# pair.
History = Union[HasEpochs, Mapping[str, Curve], tuple[Any, Any]]


def series(history: History, metric: str) -> Curve:
    """``metric`` of ``history`` as float arrays."""
    if isinstance(history, Mapping):
        epochs, values = history[metric]
    elif isinstance(history, tuple):
        epochs, values = history
    else:
        pick = getattr(history, "metric", None)  # EpochStats: its extra metrics too
        epochs, values = history.epochs, pick(metric) if pick else getattr(history, metric)
    x = np.asarray(epochs, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"{metric}: {len(x)} epochs but {len(y)} values")
    return Curve(x, y)


def tensor_series(history: History, metric: str = "update_ratio") -> dict[str, Curve]:
    """``metric`` of each parameter tensor of ``history`` (its ``<metric>/<tensor>``
    metrics), by tensor, in the order recorded; empty where it has none."""
    prefix = f"{metric}/"
    if isinstance(history, tuple):
        return {}
    names = history if isinstance(history, Mapping) else getattr(history, "extra", {})
    return {k[len(prefix):]: series(history, k) for k in names if k.startswith(prefix)}
