"""The search space: optimizer, its learning rate (log scale, per optimizer), scheduler and
their sub-parameters, with the ranges ``sweeps.optim`` gives them.

Each optimizer's learning-rate interval comes from one source (``LR_SOURCES``, resolved by
``sweeps.study.opening.search_space``): the user's ``--lr-min/--lr-max``, an LR range test
(``--lr-range auto``), the intervals the objective declares (``lr_ranges``), or the fixed
defaults of ``sweeps.optim.OPTIMIZERS``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeps.optim.optimizers import OPTIMIZERS, takes
from sweeps.optim.schedulers import SCHEDULERS
from sweeps.optim.subparams import SubParam
from sweeps.training.hparams import Hyperparams

if TYPE_CHECKING:
    import optuna

__all__ = ["GRID_LR_POINTS", "LR_SOURCES", "SearchSpace", "suggest"]

GRID_LR_POINTS = 9  # learning rates per optimizer in a grid search (log-spaced)
LR_SOURCES = ("user", "auto", "objective", "default")  # where the lr intervals come from


def suggest(trial: optuna.Trial, param: SubParam, epochs: int) -> float:
    """Sample ``param`` in its search range for a run of ``epochs`` (an integer one as an
    ``int``, so that it prints and exports as one)."""
    low, high = param.bounds(epochs)
    if param.integer:
        return (trial.suggest_int(param.name, int(low), int(high), log=param.log))
    return trial.suggest_float(param.name, low, high, log=param.log)


@dataclass(frozen=True)
class SearchSpace:
    optimizers: tuple[str, ...]  # names from sweeps.optim.OPTIMIZERS
    schedulers: tuple[str, ...]  # names from sweeps.optim.SCHEDULERS
    epochs: int  # schedule lengths are relative to it
    lr_min: float | None = None  # overrides every optimizer's lower lr bound
    lr_max: float | None = None  # overrides every optimizer's upper lr bound
    lr_ranges: dict[str, tuple[float, float]] | None = None  # per optimizer; else the default
    lr_source: str = "default"  # where the intervals come from, one of LR_SOURCES
    fixed: dict[str, float] = field(default_factory=dict)  # settings of every trial that
    # takes them, not searched: weight_decay, grad_clip; beta1, beta2, eps (Adam family)
    weight_decay_range: tuple[float, float] | None = None  # searched (log) for every trial

    def lr_range(self, optimizer: str) -> tuple[float, float]:
        """The interval of ``optimizer``: from ``lr_ranges`` (else the default), either
        bound replaced by ``lr_min``/``lr_max`` where given."""
        if self.lr_ranges and optimizer in self.lr_ranges:
            low, high = self.lr_ranges[optimizer]
        else:
            low, high = OPTIMIZERS[optimizer].lr_range
        return (self.lr_min or low, self.lr_max or high)

    def validated(self) -> SearchSpace:
        """This space, or ``UsageError`` if a bound leaves an optimizer an empty lr range."""
        from sweeps.errors import UsageError

        for name in self.optimizers:
            low, high = self.lr_range(name)
            if low >= high:
                field, value = ("lr-min", low) if self.lr_min else ("lr-max", high)
                raise UsageError(field, value, f"the lr range of {name} would be "
                                               f"{low:g}..{high:g}; give both --lr-min and "
                                               "--lr-max, min below max")
        return self

    def sample(self, trial: optuna.Trial) -> Hyperparams:
        """Draw one configuration (continuous sub-parameters; for a grid, see ``grid``)."""
        optimizer = trial.suggest_categorical("optimizer", list(self.optimizers))
        scheduler = trial.suggest_categorical("scheduler", list(self.schedulers))
        if _is_grid(trial):
            low, high = self.lr_range(optimizer)
            index = trial.suggest_int("lr_index", 0, GRID_LR_POINTS - 1)
            step = (math.log10(high) - math.log10(low)) / (GRID_LR_POINTS - 1)
            return Hyperparams(optimizer, 10 ** (math.log10(low) + index * step), scheduler,
                               self.fixed_for(optimizer))
        low, high = self.lr_range(optimizer)
        lr = trial.suggest_float(f"lr_{optimizer}", low, high, log=True)
        params = OPTIMIZERS[optimizer].params + SCHEDULERS[scheduler].params
        options = {p.name: suggest(trial, p, self.epochs) for p in params
                   if p.name not in self.fixed  # AdamW's weight decay, where fixed
                   and not (p.name == "weight_decay" and self.weight_decay_range)}
        if self.weight_decay_range is not None:  # one distribution for every optimizer
            options["weight_decay"] = trial.suggest_float("weight_decay",
                                                          *self.weight_decay_range, log=True)
        return Hyperparams(optimizer, lr, scheduler, {**options, **self.fixed_for(optimizer)})

    def fixed_for(self, optimizer: str) -> dict[str, float]:
        """The fixed settings ``optimizer`` takes (the Adam family's only for it)."""
        return {k: v for k, v in self.fixed.items() if takes(optimizer, k)}

    def grid(self) -> dict[str, list[Any]]:
        """The grid for Optuna's GridSampler: optimizer x scheduler x log-spaced lr index."""
        return {"optimizer": list(self.optimizers), "scheduler": list(self.schedulers),
                "lr_index": list(range(GRID_LR_POINTS))}

    def describe(self) -> dict[str, Any]:
        """The space as loggable values."""
        out: dict[str, Any] = {"optimizers": ",".join(self.optimizers),
                               "schedulers": ",".join(self.schedulers),
                               "lr_source": self.lr_source}
        for name in self.optimizers:
            low, high = self.lr_range(name)
            out[f"lr_range_{name}"] = f"{low:g}..{high:g}"
        if self.weight_decay_range is not None:
            out["weight_decay_range"] = "{:g}..{:g}".format(*self.weight_decay_range)
        return {**out, **self.fixed}


def _is_grid(trial: optuna.Trial) -> bool:
    import optuna

    return isinstance(trial.study.sampler, optuna.samplers.GridSampler)
