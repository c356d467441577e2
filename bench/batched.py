"""Batched trials: trial-epochs per second of the product's batched mode
(``sweeps.batched.trials.train_batch``) against the same trials run one after another
(``sweeps.training.loop.train``), on the default objective.

Both sides run every configuration (momentum SGD with a cosine schedule, learning rates
log-spaced over four decades, some of which diverge), so each batched result is checked
against its own sequential run: the same status, epochs run and failure epoch, and the final
loss and every per-epoch statistic within ``REL`` (the tolerance of the batched tests,
``tests/sweeps/batched``); the row reports the largest relative difference found and how many
trials agree exactly (``==``). Each side's rate is its trial-epochs (epochs actually run,
diverged trials stopping early) over its wall time.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .context import Context
from .report import Bar, Row

if TYPE_CHECKING:
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import TrainResult

__all__ = ["REL", "compare", "configurations", "measure"]

NAME = "batched trials: trial-epochs/s, batched vs sequential"
REL = 1e-12  # relative tolerance of "equal" (as tests/sweeps/batched/test_batched.py)


def configurations(n: int) -> list[Hyperparams]:
    from sweeps.training.hparams import Hyperparams

    lrs = [10 ** (-2 + 4 * i / max(1, n - 1)) for i in range(n)]
    return [Hyperparams("momentum", lr, "cosine", {"momentum": 0.9}) for lr in lrs]


def measure(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    from objectives import build
    from sweeps.batched.trials import train_batch
    from sweeps.training.loop import train

    s = ctx.sizes
    objective = build("rebalance", {})
    hparams = configurations(s.batch_trials)
    train_batch(objective, hparams[:2], 10)  # warm-up: first-call costs on both sides
    train(objective, hparams[0], 10)
    start = time.perf_counter()
    batched = train_batch(objective, hparams, s.batch_epochs)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    sequential = [train(objective, hp, s.batch_epochs) for hp in hparams]
    sequential_s = time.perf_counter() - start
    batched_epochs = sum(r.epochs_run for r in batched)
    sequential_epochs = sum(r.epochs_run for r in sequential)
    batched_rate = batched_epochs / batched_s
    sequential_rate = sequential_epochs / sequential_s
    checks = [compare(a, b) for a, b in zip(batched, sequential, strict=True)]
    equal = sum(c["equal"] for c in checks)
    exact = sum(c["exact"] for c in checks)
    worst = max((c["max_rel_diff"] for c in checks), default=0.0)
    rows = [Row(NAME, batched_rate, sequential_rate, "trial-epochs/s",
                batched_rate / sequential_rate, Bar(">=", 10.0),
                f"{len(hparams)} trials, each run batched and sequentially "
                f"({batched_epochs:,} trial-epochs each side); equal to its sequential run "
                f"(rel {REL:g}): {equal}/{len(checks)}, exactly: {exact}/{len(checks)}; "
                f"max relative difference {worst:.3g}",
                error=equal != len(checks))]
    details = {"n_trials": len(hparams), "epochs": s.batch_epochs,
               "batched_s": batched_s, "batched_trial_epochs": batched_epochs,
               "batched_rate": batched_rate,
               "sequential_s": sequential_s, "sequential_trial_epochs": sequential_epochs,
               "sequential_rate": sequential_rate,
               "all_equal": equal == len(checks), "exactly_equal": exact,
               "max_rel_diff": worst, "trials": checks}
    return rows, details


def compare(batched: TrainResult, sequential: TrainResult) -> dict[str, Any]:
    """How closely a batched result follows its sequential run."""
    from sweeps.training.stats import EPOCH_METRICS

    same_course = (batched.status == sequential.status
                   and batched.epochs_run == sequential.epochs_run
                   and batched.failure_epoch == sequential.failure_epoch)
    diff = _rel_diff(np.array([batched.final_loss]), np.array([sequential.final_loss]))
    exact = same_course and _exact(batched.final_loss, sequential.final_loss)
    if same_course:
        for metric in EPOCH_METRICS:
            got = getattr(batched.history, metric)
            want = getattr(sequential.history, metric)
            diff = max(diff, _rel_diff(got, want))
            exact = exact and bool(np.array_equal(got, want, equal_nan=True))
    else:
        diff = math.inf
    return {"status": sequential.status, "epochs_run": sequential.epochs_run,
            "same_course": same_course, "equal": same_course and diff <= REL,
            "exact": exact, "max_rel_diff": diff}


def _rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    """Largest ``|got - want| / |want|`` (0 where both are equal, NaN and inf included)."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    if same.all():
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(got - want) / np.abs(want)
    rel = np.where(same, 0.0, rel)
    rel = np.where(np.isnan(rel), math.inf, rel)  # NaN on one side only, or inf - inf
    return float(rel.max())


def _exact(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))
