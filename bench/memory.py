"""Memory: the peak resident set of every process of a sweep, and whether it grows with the
number of trials or of epochs.

Sweeps compared (each on fresh stores, ``bench.procs`` sampling the process tree):
N trials x E epochs (the throughput section's sweep), few trials x E epochs, N trials x few
epochs, and the ``--workers 2`` run of the workers section (main and helper processes).
"Flat" means the main process's peak grows by at most 10% from the small sweep to the big one.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .context import Context, SweepRun
from .report import Bar, Row
from .workers import worker_sweep

__all__ = ["FLAT", "LIMIT_MIB", "measure"]

LIMIT_MIB = 600.0  # bar: peak RSS of any one process
FLAT = 1.10  # bar: big sweep's peak / small sweep's peak


def measure(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    s = ctx.sizes
    big = ctx.product_sweep(s.sweep_trials, s.sweep_epochs)
    few_trials = ctx.product_sweep(s.memory_few_trials, s.sweep_epochs)
    few_epochs = ctx.product_sweep(s.sweep_trials, s.memory_few_epochs)
    two = worker_sweep(ctx, 2)
    runs = {_label(r): r for r in (big, few_trials, few_epochs, two)}
    worst_label, worst = max(((label, p) for label, r in runs.items() for p in r.run.processes),
                             key=lambda lp: lp[1].peak_mib)
    main = {label: r.run.role_peak("main") for label, r in runs.items()}
    b, t, e = (big.run.role_peak("main"), few_trials.run.role_peak("main"),
               few_epochs.run.role_peak("main"))
    rows = [
        Row("memory: peak RSS of any one process", worst.peak_mib, None, "MiB", None,
            Bar("<", LIMIT_MIB, "product", "MiB"),
            f"highest: {worst.role} of {worst_label}"),
        Row(f"  memory vs trials: {s.sweep_trials} vs {s.memory_few_trials} trials", b, t,
            "MiB", b / t, Bar("<=", FLAT), "main process peak, bigger / smaller sweep"),
        Row(f"  memory vs epochs: {s.sweep_epochs:,} vs {s.memory_few_epochs:,} epochs", b, e,
            "MiB", b / e, Bar("<=", FLAT), "main process peak, longer / shorter sweep"),
    ]
    helpers = [p.peak_mib for p in two.run.processes if p.role == "helper"]
    if helpers:
        rows.append(Row("  memory, --workers 2: helper vs main process", max(helpers),
                        two.run.role_peak("main"), "MiB",
                        max(helpers) / two.run.role_peak("main"), None,
                        "peak of the helper worker (forked) / the main process"))
    careful = ctx.careful_run
    if careful is not None:
        rows.append(Row("  memory, product sweep vs careful loop", b, careful.peak_mib, "MiB",
                        b / careful.peak_mib, None, "main process peaks, same trials"))
    details: dict[str, Any] = {
        "main_peak_mib": main,
        "processes": {label: [asdict(p) for p in r.run.processes] for label, r in runs.items()},
        "careful_peak_mib": None if careful is None else careful.peak_mib,
    }
    return rows, details


def _label(sweep: SweepRun) -> str:
    return f"{sweep.n_trials}x{sweep.epochs} --workers {sweep.workers}"
