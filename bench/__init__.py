"""lrsweep's benchmark suite (not part of the test run): tracking overhead, sweep throughput
against the careful user's loop, workers, memory, start-up and batched trials, side by side.

    python -m bench            # full suite; table on stdout, JSON in bench/results/latest.json
    python -m bench --quick    # smoke run with reduced sizes
"""

from .report import Bar, Report, Row
from .sizes import FULL, QUICK, Sizes

__all__ = ["FULL", "QUICK", "Bar", "Report", "Row", "Sizes"]
