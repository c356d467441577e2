"""Tracking overhead: one trial with every epoch logged, against the seed's bare loop.

Four variants of the same SGD run (the ``rebalance`` objective, lr 0.01) are timed in this
process, interleaved (each repetition runs all four, in a rotated order) and the median of
each is kept:

- the bare seed loop (``bench.seed_loop``);
- the product loop untracked: ``sweeps.training.loop.train`` with no observer;
- the product loop tracked: a ``StudyTracker`` run on a fresh SQLite store as the observer,
  timed from ``start_run`` to ``close`` (every value written), direct SQL sink;
- the same through ``log_batch`` only (``StudyTracker(..., direct=False)``).

Creating the store (MLflow's migrations, once per study) is not timed; every tracked run is
checked afterwards to hold all its values, read back with ``MlflowClient.get_metric_history``.

The per-epoch cost is also read as a slope: the bare loop and the tracked trial run for
``epochs`` and five times as many, and the slope of each is the difference of the medians over
the difference of the epochs, so the fixed costs (the run's start, the last flush) drop out.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from .context import Context
from .report import Bar, Row
from .seed_loop import bare_loop

__all__ = ["measure"]

log = logging.getLogger(__name__)
LR = 0.01  # the seed article's first learning rate (the "frozen" run)
BARE, UNTRACKED, DIRECT, LOG_BATCH = ("bare seed loop", "product loop, untracked",
                                      "product loop, tracked (direct SQL)",
                                      "product loop, tracked (log_batch)")


def measure(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    epochs = ctx.sizes.overhead_epochs
    variants: dict[str, Callable[[int], float]] = {
        BARE: lambda n: bare_loop(n, LR),
        UNTRACKED: _untracked,
        DIRECT: lambda n: _tracked(ctx, n, direct=True),
        LOG_BATCH: lambda n: _tracked(ctx, n, direct=False),
    }
    for run in variants.values():  # warm-up: lazy imports, first-call costs
        run(min(epochs, 200))
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(ctx.sizes.repeats):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            times[name].append(variants[name](epochs))
            log.info("  %s: %.3f s", name, times[name][-1])
    median = {name: statistics.median(t) for name, t in times.items()}
    bare = median[BARE]
    rows = [
        Row(f"tracking overhead: 1 trial x {epochs:,} epochs, every epoch logged",
            median[DIRECT], bare, "s", median[DIRECT] / bare, Bar("<=", 1.3),
            "tracked product trial (direct SQL, incl. final flush) / bare seed loop"),
        Row("  product loop untracked vs bare", median[UNTRACKED], bare, "s",
            median[UNTRACKED] / bare, None,
            "sweeps.training.loop.train without observers / bare seed loop: the diagnostics'"
            " cost"),
        Row("  tracked via log_batch only vs bare", median[LOG_BATCH], bare, "s",
            median[LOG_BATCH] / bare, None, "StudyTracker(direct=False) / bare seed loop"),
    ]
    slopes = _slopes(ctx, {BARE: variants[BARE], DIRECT: variants[DIRECT]}, epochs)
    rows.append(Row(f"tracked epoch, slope over {epochs:,}-{5 * epochs:,} epochs",
                    slopes[DIRECT] * 1e6, slopes[BARE] * 1e6, "us",
                    slopes[DIRECT] / slopes[BARE], Bar("<=", 1.1),
                    "per-epoch slope of the tracked trial / of the bare seed loop"))
    details = {"epochs": epochs, "lr": LR, "repeats": ctx.sizes.repeats, "times_s": times,
               "slope_s_per_epoch": slopes,
               "median_s": median,
               "per_epoch_us": {k: v / epochs * 1e6 for k, v in median.items()},
               "tracking_only_ratio": median[DIRECT] / median[UNTRACKED]}
    return rows, details


def _slopes(ctx: Context, variants: dict[str, Callable[[int], float]],
            epochs: int) -> dict[str, float]:
    """Seconds per epoch of each variant: the difference of its median times at ``epochs``
    and ``5 * epochs`` over the difference of the epochs (runs interleaved)."""
    lengths = (epochs, 5 * epochs)
    times: dict[tuple[str, int], list[float]] = {(n, e): [] for n in variants for e in lengths}
    for rep in range(ctx.sizes.repeats):
        for name, length in list(times)[rep % len(times):] + list(times)[:rep % len(times)]:
            times[name, length].append(variants[name](length))
    median = {key: statistics.median(t) for key, t in times.items()}
    return {name: (median[name, lengths[1]] - median[name, lengths[0]])
            / (lengths[1] - lengths[0]) for name in variants}


def _untracked(epochs: int) -> float:
    from objectives import build
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import train

    objective = build("rebalance", {})
    start = time.perf_counter()
    train(objective, Hyperparams("sgd", LR), epochs)
    return time.perf_counter() - start


def _tracked(ctx: Context, epochs: int, *, direct: bool) -> float:
    from mlflow import MlflowClient

    from objectives import build
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import train
    from sweeps.training.stats import EPOCH_METRICS
    from tracking.study_run import StudyTracker

    objective = build("rebalance", {})
    hp = Hyperparams("sgd", LR)
    uri = f"sqlite:///{ctx.fresh_dir('tracked')}/mlflow.db"
    tracker = StudyTracker(MlflowClient(tracking_uri=uri), "bench", direct=direct)
    if tracker.writer.direct != direct:
        raise RuntimeError(f"StudyTracker(direct={direct}) has writer.direct="
                           f"{tracker.writer.direct}: the direct SQL sink was refused")
    start = time.perf_counter()
    run = tracker.start_run(hp.to_dict(), {"bench": "tracking_overhead"})
    result = train(objective, hp, epochs, observers=(run,))
    tracker.close()
    elapsed = time.perf_counter() - start
    client = MlflowClient(tracking_uri=uri)
    stored = sum(len(client.get_metric_history(run.run_id, m)) for m in EPOCH_METRICS)
    expected = result.epochs_run * len(EPOCH_METRICS)
    if stored != expected or tracker.writer.errors:
        raise RuntimeError(f"tracked run holds {stored} of {expected} values "
                           f"({tracker.writer.errors})")
    return elapsed
