"""Workers: trials per second of ``--workers 2`` against ``--workers 1``.

Same configuration for both, only ``--workers`` differs: fresh stores, Optuna's journal file
(the product's default storage for several workers), ``--pruner none`` and
``--no-prune-stalled``, so that every trial costs the same epochs and the rate does not
depend on which trials happened to be pruned (each worker draws from its own sampler stream,
so the two runs' trials differ).

Two rates per run: end to end (trials / wall time of the command, start-up included: what a
user waits for) and steady state: the sum over the worker processes of each one's trials /
(its last trial's end - its first trial's start), from the study's timestamps. (The main
process starts trials at once, its helper a few seconds later: one span for all would count
those seconds as if both were running.)
"""

from __future__ import annotations

from typing import Any

from .context import Context, SweepRun
from .report import Bar, Row

__all__ = ["measure", "worker_sweep"]


def worker_sweep(ctx: Context, workers: int) -> SweepRun:
    sizes = ctx.sizes
    # --batch 1: one trial at a time per worker, so the comparison measures processes
    # sharing the study, not how a split changes the batches
    return ctx.product_sweep(sizes.worker_trials, sizes.worker_epochs, workers=workers,
                             pruner="none", storage="journal", batch=1, prune_stalled=False)


def measure(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    one, two = worker_sweep(ctx, 1), worker_sweep(ctx, 2)
    rates = {w: _rates(run) for w, run in ((1, one), (2, two))}
    n, epochs = ctx.sizes.worker_trials, ctx.sizes.worker_epochs
    end1, end2 = rates[1]["end_to_end"], rates[2]["end_to_end"]
    st1, st2 = rates[1]["steady_state"], rates[2]["steady_state"]
    rows = [
        Row(f"workers: {n} trials x {epochs:,} epochs, --batch 1, --workers 2 vs 1"
            " (end to end)",
            end2, end1, "trials/s", end2 / end1, Bar(">=", 1.8),
            "trials / command wall time, start-up of the workers included"),
        Row("  workers, steady state", st2, st1, "trials/s", st2 / st1, Bar(">=", 1.8),
            "sum over processes of trials / (last trial end - first trial start)"),
    ]
    details = {"n_trials": n, "epochs": epochs, "rates": rates,
               "wall_s": {1: one.run.wall_s, 2: two.run.wall_s},
               "commands": {1: " ".join(one.run.argv), 2: " ".join(two.run.argv)}}
    return rows, details


def _rates(sweep: SweepRun) -> dict[str, Any]:
    import optuna

    from sweeps.storage import open_storage
    from sweeps.study import counted_trials

    study = optuna.load_study(study_name=sweep.study, storage=open_storage(sweep.storage))
    trials = counted_trials(study)
    by_worker: dict[str, list[Any]] = {}
    for t in trials:
        by_worker.setdefault(str(t.user_attrs.get("worker")), []).append(t)
    spans = {w: (max(t.datetime_complete for t in ts) - min(t.datetime_start for t in ts))
             .total_seconds() for w, ts in by_worker.items()}
    steady = sum(len(by_worker[w]) / span for w, span in spans.items() if span > 0)
    return {"trials": len(trials), "all_trials": len(study.trials),
            "trials_by_worker": {w: len(ts) for w, ts in by_worker.items()},
            "end_to_end": len(trials) / sweep.run.wall_s, "steady_state": steady,
            "spans_s": spans}
