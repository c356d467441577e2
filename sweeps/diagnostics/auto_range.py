"""``--lr-range auto``: centre each optimizer's learning-rate interval on an LR range test.

Before the study's first trial, one range test per optimizer in the search (from the
objective's initial parameters, ``sweeps.diagnostics.range_test``; for a mini-batch objective
one step per batch, read off the smoothed loss) gives a suggested learning rate
(``combine``: the middle of the loss's valley and edge; for a mini-batch objective the
valley); the search interval spans ``AUTO_DECADES`` decades either side of it. The
intervals are stored with the study, so a resumed study searches the same space. A new
study's first trials are the suggestions themselves, one per optimizer
(``study.enqueue_trial``; the sampler draws the scheduler and the other parameters), so the
search starts where the diagnosis points.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from objectives import Objective
    from sweeps.diagnostics.range_test import RangeTestResult

__all__ = ["AUTO_DECADES", "AutoRanges", "auto_lr_ranges"]

log = logging.getLogger(__name__)

AUTO_DECADES = 1.5  # decades of learning rate searched either side of the suggestion


@dataclass(frozen=True)
class AutoRanges:
    ranges: dict[str, tuple[float, float]]  # optimizer -> (lr_min, lr_max)
    tests: dict[str, RangeTestResult]  # optimizer -> its range test
    suggested: dict[str, float]  # optimizer -> the range test's lr (where it gave one)


def auto_lr_ranges(objective: Objective, optimizers: tuple[str, ...], *,
                   device: str = "cpu", decades: float = AUTO_DECADES) -> AutoRanges:
    """Run a range test per optimizer; intervals ``decades`` either side of each result.
    An objective whose loss raises cannot start: ``ObjectiveStartError``."""
    from sweeps.diagnostics.range_test import range_test
    from sweeps.diagnostics.suggestion import combine
    from sweeps.optim.optimizers import OPTIMIZERS
    from sweeps.training.loop import ObjectiveStartError

    ranges: dict[str, tuple[float, float]] = {}
    tests: dict[str, RangeTestResult] = {}
    suggested: dict[str, float] = {}
    for name in optimizers:
        try:
            result = range_test(objective, name, device=device)
        except Exception as exc:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
        tests[name] = result
        suggestion = combine(result, None)
        if suggestion is None:
            ranges[name] = OPTIMIZERS[name].lr_range
            found = ("suggested nothing" if result.descends
                     else "found no real descent (no lr it tried made the loss fall)")
            log.warning("range test of %s %s; keeping %g..%g", name, found, *ranges[name])
            continue
        ranges[name] = (suggestion.lr / 10**decades, suggestion.lr * 10**decades)
        suggested[name] = suggestion.lr
        log.info("lr range of %s: %.3g..%.3g (range test: %.3g, %s)", name, *ranges[name],
                 suggestion.lr, suggestion.basis)
    return AutoRanges(ranges, tests, suggested)
