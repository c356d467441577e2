"""Optuna pruners by name (``--pruner``), each a small builder for a run of ``epochs``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

__all__ = ["DEFAULT_PRUNER", "PRUNERS", "build_pruner"]

Builder = Callable[[int], "optuna.pruners.BasePruner"]


def _median(epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=epochs // 5)


def _hyperband(epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    from sweeps.training.loop import default_chunk

    return optuna.pruners.HyperbandPruner(min_resource=default_chunk(epochs),
                                          max_resource=epochs)


def _none(epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS: dict[str, Builder] = {"median": _median, "hyperband": _hyperband, "none": _none}
DEFAULT_PRUNER = "median"


def build_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    return PRUNERS[name](epochs)
