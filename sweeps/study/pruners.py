"""Optuna pruners by name (``--pruner``), each a small builder for a run of ``epochs`` of an
objective (``first_rung``: when its trials may first be pruned)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

__all__ = ["DEFAULT_PRUNER", "PRUNERS", "build_pruner"]

Builder = Callable[[int, int], "optuna.pruners.BasePruner"]  # (epochs, first rung)
REDUCTION = 3  # successive halving keeps the best third at each rung


def first_rung(objective: object, epochs: int) -> int:
    """Epochs a trial runs before it can be pruned: the objective's ``prune_warmup`` if it
    declares one (a data-set objective's validation metric tells after one epoch), else a
    fifth of the run (a loss trained for thousands of full-batch steps, where warm-up
    schedules such as ``onecycle`` start slow)."""
    declared = getattr(objective, "prune_warmup", None)
    return max(1, int(declared) if declared is not None else epochs // 5)


def _halving(epochs: int, first: int) -> optuna.pruners.BasePruner:
    from sweeps.study.halving import LockstepHalving

    return LockstepHalving(first, epochs, REDUCTION)


def _median(epochs: int, first: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=first)


def _hyperband(epochs: int, first: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=epochs,
                                          reduction_factor=REDUCTION)


def _none(epochs: int, first: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS: dict[str, Builder] = {"halving": _halving, "median": _median,
                               "hyperband": _hyperband, "none": _none}
DEFAULT_PRUNER = "halving"


def build_pruner(name: str, epochs: int, objective: object = None) -> optuna.pruners.BasePruner:
    return PRUNERS[name](epochs, first_rung(objective, epochs))
