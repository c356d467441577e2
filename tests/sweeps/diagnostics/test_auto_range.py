"""``--lr-range auto`` on a mini-batch objective: intervals centred on its range tests."""

from __future__ import annotations

import math

import pytest

from sweeps.diagnostics.auto_range import AUTO_DECADES, auto_lr_ranges
from sweeps.diagnostics.suggestion import combine

try:  # tests/ as a plain folder (pytest puts it on sys.path) or as a package
    from minibatch_objectives import tiny
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import tiny


def test_minibatch_objective_gets_an_interval_per_optimizer_around_its_range_test() -> None:
    found = auto_lr_ranges(tiny(), ("sgd", "adam"))

    assert found.ranges.keys() == found.tests.keys() == found.suggested.keys() == {"sgd", "adam"}
    for name, (low, high) in found.ranges.items():
        test = found.tests[name]
        assert test.minibatch and test.beta == 0.98
        suggestion = combine(test, None)
        assert suggestion is not None and found.suggested[name] == suggestion.lr
        assert math.isfinite(low) and 0 < low < found.suggested[name] < high
        assert (low, high) == pytest.approx((suggestion.lr / 10**AUTO_DECADES,
                                             suggestion.lr * 10**AUTO_DECADES))
    assert found.suggested["sgd"] != found.suggested["adam"]
