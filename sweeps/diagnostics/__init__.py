"""Why parameters don't move: a per-tensor probe, the LR range test, ``--lr-range auto``, and
the watch that stops stalled trials."""

from sweeps.diagnostics.auto_range import AutoRanges, auto_lr_ranges
from sweeps.diagnostics.probe import ProbeResult, TensorStats, probe
from sweeps.diagnostics.range_test import RangeTestResult, range_test
from sweeps.diagnostics.stall import StallWatch
from sweeps.diagnostics.suggestion import LrSuggestion, combine
from sweeps.diagnostics.tensor_watch import TensorWatch

__all__ = ["AutoRanges", "LrSuggestion", "ProbeResult", "RangeTestResult", "StallWatch",
           "TensorStats", "TensorWatch", "auto_lr_ranges", "combine", "probe", "range_test"]
