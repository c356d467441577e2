"""The Python API: ``from sweeps.api import sweep``. It lives in ``sweeps.cli.api``."""

from sweeps.cli.api import SweepResult, sweep

__all__ = ["SweepResult", "sweep"]
