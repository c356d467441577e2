"""Batched trials: trial-epochs per second of the product's batched mode against sequential
trials, on the default objective.

The batched mode is looked for as ``sweeps.batched.train_batch(objective, hparams, epochs)``
returning one ``TrainResult`` per ``Hyperparams``; until it exists this section reports
"not available". Both sides run the same configurations (momentum SGD with a cosine schedule,
learning rates log-spaced over four decades); the sequential side runs the first few of them
through ``sweeps.loop.train``, which is enough for a rate.
"""

from __future__ import annotations

import importlib.util
import time
from typing import TYPE_CHECKING, Any

from .context import Context
from .report import Bar, Row

if TYPE_CHECKING:
    from sweeps.training.hparams import Hyperparams

__all__ = ["available", "measure"]

NAME = "batched trials: trial-epochs/s, batched vs sequential"


def available() -> bool:
    """True if the product has a batched mode (``sweeps.batched.train_batch``)."""
    if importlib.util.find_spec("sweeps.batched") is None:
        return False
    return hasattr(importlib.import_module("sweeps.batched"), "train_batch")


def configurations(n: int) -> list[Hyperparams]:
    from sweeps.training.hparams import Hyperparams

    lrs = [10 ** (-2 + 4 * i / max(1, n - 1)) for i in range(n)]
    return [Hyperparams("momentum", lr, "cosine", {"momentum": 0.9}) for lr in lrs]


def measure(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    if not available():
        return ([Row(NAME, None, None, "trial-epochs/s", None, Bar(">=", 10.0),
                     "not available: no sweeps.batched.train_batch yet")],
                {"available": False})
    from objectives import build
    from sweeps.batched.trials import train_batch
    from sweeps.training.loop import train

    s = ctx.sizes
    objective = build("rebalance", {})
    hparams = configurations(s.batch_trials)
    train_batch(objective, hparams[:2], 10)  # warm-up
    start = time.perf_counter()
    results = train_batch(objective, hparams, s.batch_epochs)
    batched_s = time.perf_counter() - start
    batched_epochs = sum(r.epochs_run for r in results)
    start = time.perf_counter()
    sequential = [train(objective, hp, s.batch_epochs)
                  for hp in hparams[: s.batch_sequential_trials]]
    sequential_s = time.perf_counter() - start
    sequential_epochs = sum(r.epochs_run for r in sequential)
    batched_rate = batched_epochs / batched_s
    sequential_rate = sequential_epochs / sequential_s
    same = [abs(a.final_loss - b.final_loss) <= 1e-12 * max(abs(b.final_loss), 1e-300)
            for a, b in zip(results, sequential)]
    rows = [Row(NAME, batched_rate, sequential_rate, "trial-epochs/s",
                batched_rate / sequential_rate, Bar(">=", 10.0),
                f"{len(hparams)} trials batched vs {len(sequential)} sequential; "
                f"final losses equal: {all(same)}")]
    details = {"available": True, "batched_s": batched_s, "batched_trial_epochs": batched_epochs,
               "sequential_s": sequential_s, "sequential_trial_epochs": sequential_epochs,
               "final_losses_equal": same}
    return rows, details
