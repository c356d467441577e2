"""Workers: trials per second of ``--workers 2`` against ``--workers 1``.

Same configuration for both, only ``--workers`` differs: fresh stores, Optuna's journal file
(the product's default storage for several workers), ``--pruner none`` and
``--no-prune-stalled``, and the same trials: the study is created beforehand with the same
``worker_trials`` parameter sets waiting in it (drawn once from the product's search space),
so both runs do the same work whichever process takes which trial. The two commands run in
turn, ``worker_repeats`` times; each rate is the median over the repetitions.

A third row runs the same two commands with ``--log-every 1000``: the same training and the
same diagnostics, but a thousandth of the metric rows for the writers to insert (they cost
about 4 us a row, ~0.2 s of CPU a 10,000-epoch trial). With one worker the writer has the
second core to itself; with two, both writers share the cores with the trainers: this row
shows how much of the gap to 2x is that work.

A fourth row is the ceiling: the same trials trained by ``bench.train_only`` (the training loop
and nothing else) in one process, then split over two side by side. Two processes of this
workload gain less than 2x on a 2-core machine (shared caches, memory, the host); a sweep adds
the metric writers' work on the same two cores.

Two rates per run: end to end (trials / wall time of the command, start-up included: what a
user waits for) and steady state: the sum over the worker processes of each one's trials /
(its last trial's end - its first trial's start), from the study's timestamps. (The main
process starts trials at once, its helper a moment later: one span for all would count that
moment as if both were running.)
"""

from __future__ import annotations

import statistics
from functools import cache
from typing import Any

from sweeps.training.hparams import Hyperparams

from .context import Context, SweepRun
from .report import Bar, Row

__all__ = ["measure", "trial_hparams", "trial_params", "worker_sweep"]

SPARSE = 1000  # --log-every of the rows that take the metric writers' work out


@cache
def _drawn(n: int, epochs: int, seed: int) -> tuple[tuple[dict[str, Any], Hyperparams], ...]:
    import optuna

    from sweeps.study.config import SweepConfig
    from sweeps.study.opening import search_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = search_space(SweepConfig(), epochs)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = []
    for _ in range(n):
        trial = study.ask()
        hp = space.sample(trial)
        drawn.append((dict(trial.params), hp))
    return tuple(drawn)


def trial_params(n: int, epochs: int, seed: int = 0) -> tuple[dict[str, Any], ...]:
    """``n`` parameter sets of the default search space, drawn at random (seeded)."""
    return tuple(params for params, _ in _drawn(n, epochs, seed))


def trial_hparams(n: int, epochs: int, seed: int = 0) -> tuple[Hyperparams, ...]:
    """The hyperparameters of ``trial_params``, as the product trains them."""
    return tuple(hp for _, hp in _drawn(n, epochs, seed))


def worker_sweep(ctx: Context, workers: int, repeat: int = 0, log_every: int = 1) -> SweepRun:
    sizes = ctx.sizes
    # --batch 1: one trial at a time per worker, so the comparison measures processes
    # sharing the study, not how a split changes the batches
    return ctx.product_sweep(sizes.worker_trials, sizes.worker_epochs, workers=workers,
                             pruner="none", storage="journal", batch=1, prune_stalled=False,
                             trials=trial_params(sizes.worker_trials, sizes.worker_epochs),
                             repeat=repeat, log_every=log_every)


def measure(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    runs: dict[int, list[SweepRun]] = {1: [], 2: []}
    sparse: dict[int, list[SweepRun]] = {1: [], 2: []}  # --log-every SPARSE
    ceiling: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(ctx.sizes.worker_repeats):
        for w in (1, 2):
            runs[w].append(worker_sweep(ctx, w, repeat))
            sparse[w].append(worker_sweep(ctx, w, repeat, log_every=SPARSE))
            ceiling[w].append(_train_only_rate(ctx, w))
    rates = {w: [_rates(run) for run in rs] for w, rs in runs.items()}
    sparse_rates = {w: [_rates(run) for run in rs] for w, rs in sparse.items()}
    median, sparse_median = _medians(rates), _medians(sparse_rates)
    n, epochs = ctx.sizes.worker_trials, ctx.sizes.worker_epochs
    end1, end2 = median[1]["end_to_end"], median[2]["end_to_end"]
    st1, st2 = median[1]["steady_state"], median[2]["steady_state"]
    sp1, sp2 = sparse_median[1]["steady_state"], sparse_median[2]["steady_state"]
    reps = ctx.sizes.worker_repeats
    c1, c2 = statistics.median(ceiling[1]), statistics.median(ceiling[2])
    rows = [
        Row(f"workers: {n} trials x {epochs:,} epochs, --batch 1, --workers 2 vs 1"
            " (end to end)",
            end2, end1, "trials/s", end2 / end1, Bar(">=", 1.8),
            f"trials / command wall time, start-up included; median of {reps} runs each"),
        Row("  workers, steady state", st2, st1, "trials/s", st2 / st1, Bar(">=", 1.8),
            "sum over processes of trials / (last trial end - first trial start)"),
        Row(f"  workers, steady state, metrics every {SPARSE:,}th epoch", sp2, sp1, "trials/s",
            sp2 / sp1, None,
            "--log-every: the same training, a thousandth of the rows for the metric writers"),
        Row("  ceiling: the same trials, training only, 2 processes vs 1", c2, c1,
            "trials/s", c2 / c1, None,
            "sweeps.training.loop.train alone (no Optuna, MLflow or metric writer): what two "
            "processes of this workload gain on this machine"),
    ]
    details = {"n_trials": n, "epochs": epochs, "repeats": reps, "rates": rates,
               "median": median, "trials": list(trial_params(n, epochs)),
               "sparse_log_every": SPARSE, "sparse_rates": sparse_rates,
               "sparse_median": sparse_median,
               "train_only_rates": ceiling,
               "wall_s": {w: [r.run.wall_s for r in rs] for w, rs in runs.items()},
               "commands": {w: " ".join(rs[0].run.argv) for w, rs in runs.items()}}
    return rows, details


def _medians(rates: dict[int, list[dict[str, Any]]]) -> dict[int, dict[str, float]]:
    return {w: {kind: statistics.median(r[kind] for r in rs)
                for kind in ("end_to_end", "steady_state")} for w, rs in rates.items()}


def _train_only_rate(ctx: Context, processes: int) -> float:
    """Trials per second of ``bench.train_only`` split over ``processes`` side by side: the
    sum over processes of trials / the seconds their trials took."""
    import json
    import subprocess

    sizes = ctx.sizes
    argv = [ctx.python("-m", "bench.train_only", "--trials", str(sizes.worker_trials),
                       "--epochs", str(sizes.worker_epochs), "--part", f"{i}/{processes}")
            for i in range(processes)]
    started = [subprocess.Popen(a, env=ctx.env, stdout=subprocess.PIPE) for a in argv]
    rate = 0.0
    for proc, a in zip(started, argv):
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(a)} exited with status {proc.returncode}")
        seconds = json.loads(out)["seconds"]
        rate += len(seconds) / sum(seconds)
    return rate


def _rates(sweep: SweepRun) -> dict[str, Any]:
    import optuna

    from sweeps.storage.backends import open_storage
    from sweeps.study.results import counted_trials

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
