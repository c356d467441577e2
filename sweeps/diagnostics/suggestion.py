"""One learning rate to try: the range test's suggestions and the update-ratio rule combined
(``combine``), with the interval they span."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sweeps.diagnostics.range_test import RangeTestResult

__all__ = ["LrSuggestion", "combine"]


@dataclass(frozen=True)
class LrSuggestion:
    """One learning rate to try and the interval the methods span."""

    lr: float  # the combined suggestion
    low: float  # smallest lr any method suggested
    high: float  # largest lr any method suggested
    basis: str  # how ``lr`` was obtained


def combine(result: RangeTestResult | None, ratio_lr: float | None) -> LrSuggestion | None:
    """Combine the range test's suggestions and the update-ratio rule into one.

    The lr is the geometric middle of ``valley`` (the loss falls fast) and ``edge`` (the
    loss stops falling): for full-batch steps the best lr of a long run lies close below the
    edge, while the short test's ``steepest`` and ``valley`` sit at the low end of the good
    band. Without an edge, the geometric mean of the range test's suggestions; without any,
    the ratio rule. ``low``/``high`` span every suggestion, the ratio rule included. None
    where the range test ran and its loss had no real descent at any lr (``descends``): then
    no lr made the loss fall, and a number would be a guess.

    On the seed case (``rebalance``, SGD) the middle of valley and edge lies closest to the
    best lr a long sweep finds; ``steepest`` and ``valley`` alone lie below it, and the ratio
    rule far below: it says where the parameters start to move, not how fast they can go.

    A mini-batch test's lr is its ``valley`` (fastai's default suggestion): the noise of the
    batches makes a long run unstable well below the edge. The README has the figures of
    both cases.
    """
    if result is not None and not result.descends:
        return None
    found = dict(result.suggestions) if result is not None else {}
    every = [*found.values(), *([ratio_lr] if ratio_lr and math.isfinite(ratio_lr) else [])]
    if not every:
        return None
    if result is not None and result.minibatch and "valley" in found:
        lr, basis = found["valley"], "valley of the smoothed loss"
    elif "valley" in found and "edge" in found:
        lr, basis = _geomean([found["valley"], found["edge"]]), "middle of valley and edge"
    elif found:
        lr, basis = _geomean(list(found.values())), f"mean of {' and '.join(found)}"
    else:
        lr, basis = every[0], "update-ratio rule"
    return LrSuggestion(lr, min(every), max(every), basis)


def _geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))
