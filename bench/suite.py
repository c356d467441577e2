"""The sections of the suite, in the order they run, and running them into one report."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import batched, cli_startup, memory, sweep_throughput, tracking_overhead, workers
from .context import Context
from .report import Report, Row

__all__ = ["SECTIONS", "Section", "run_suite"]

log = logging.getLogger(__name__)

Section = Callable[[Context], tuple[list[Row], dict[str, Any]]]

SECTIONS: dict[str, Section] = {
    "tracking": tracking_overhead.measure,
    "sweep": sweep_throughput.measure,
    "workers": workers.measure,
    "memory": memory.measure,  # reuses the sweeps of the two sections above
    "cli": cli_startup.measure,
    "batched": batched.measure,
}


def run_suite(ctx: Context, names: list[str]) -> Report:
    """Run the named sections; a section that fails becomes an error row, the rest go on."""
    report = Report()
    for name in names:
        log.info("[%s] running", name)
        start = time.perf_counter()
        try:
            rows, details = SECTIONS[name](ctx)
        except Exception as exc:  # noqa: BLE001  (one broken section must not stop the rest)
            log.error("[%s] failed:\n%s", name, traceback.format_exc())
            rows = [Row(f"{name}: failed", None, None, "", note=_first_line(exc), error=True)]
            details = {"error": traceback.format_exc()}
        details["section_s"] = time.perf_counter() - start
        log.info("[%s] done in %.1f s", name, details["section_s"])
        report.rows.extend(rows)
        report.details[name] = details
    return report


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
