"""Optuna samplers by name (``--sampler``), each a small builder."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from sweeps.study.space import SearchSpace

__all__ = ["DEFAULT_SAMPLER", "MULTI_OBJECTIVE", "SAMPLERS", "build_sampler",
           "grid_points_left"]

Builder = Callable[[int, "SearchSpace"], "optuna.samplers.BaseSampler"]


def _tpe(seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    import optuna

    # constant_liar: trials asked together (a batch, other workers) spread out
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _random(seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _grid(seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        """``GridSampler`` for ask and tell: its ``after_trial`` calls ``study.stop()`` on the
        last point, which works only inside ``study.optimize``. The sweep asks for no more
        than ``grid_points_left`` points instead."""

        def after_trial(self, *args: Any, **kwargs: Any) -> None:
            pass

    return AskTellGridSampler(space.grid(), seed=seed)


def _cmaes(seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def _qmc(seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)


SAMPLERS: dict[str, Builder] = {
    "tpe": _tpe, "random": _random, "grid": _grid, "cmaes": _cmaes, "qmc": _qmc,
}
DEFAULT_SAMPLER = "tpe"
MULTI_OBJECTIVE = ("tpe", "random", "grid", "qmc")  # the samplers for several metrics


def build_sampler(name: str, seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    return SAMPLERS[name](seed, space)


def grid_points_left(study: optuna.Study, space: SearchSpace) -> int:
    """Points of ``space``'s grid not yet asked for (a grid sampler repeats points after)."""
    size = math.prod(len(values) for values in space.grid().values())
    asked = {t.system_attrs.get("grid_id") for t in study.get_trials(deepcopy=False)}
    return size - len(asked - {None})
