"""The product's search space, mirrored for the careful user's sweep (``bench.baseline_minibatch``)
without importing it: the optimizers and schedulers by name, each optimizer's searched
sub-parameters, the fixed lr intervals the product uses where an objective declares none, and
the ``torch.optim`` objects a configuration builds. The names, ranges and order of the
suggestions are the product's (``sweeps.study.space``, ``sweeps.optim``), so TPE sees the same
space on both sides. ``onecycle`` spans all of a run's optimizer steps, as the product's does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import torch
from torch import nn
from torch.optim import lr_scheduler

__all__ = ["DEFAULT_LR", "OPTIMIZERS", "SCHEDULERS", "make_optimizer", "make_scheduler",
           "suggest", "suggest_schedule"]

# Optimizer -> (torch class, fixed arguments, searched sub-parameters as (name, low, high, log));
# the lr intervals used where the objective declares none; the schedulers (their sub-parameters
# are in ``suggest_schedule``).
_MOMENTUM = ("momentum", 0.5, 0.99, False)
OPTIMIZERS: dict[str, tuple[str, dict[str, Any], tuple[tuple[str, float, float, bool], ...]]] = {
    "sgd": ("SGD", {}, ()),
    "momentum": ("SGD", {}, (_MOMENTUM,)),
    "nesterov": ("SGD", {"nesterov": True}, (_MOMENTUM,)),
    "adam": ("Adam", {}, ()),
    "adamw": ("AdamW", {}, (("weight_decay", 1e-6, 1e-1, True),)),
    "rmsprop": ("RMSprop", {}, (_MOMENTUM,)),
    "adagrad": ("Adagrad", {}, ()),
}
DEFAULT_LR = {name: (1e-3, 1e7) if torch_name == "SGD" else (1e-5, 1e2)
              for name, (torch_name, _, _) in OPTIMIZERS.items()}
SCHEDULERS = ("none", "step", "exponential", "cosine", "onecycle", "plateau")


def suggest(trial: optuna.Trial, epochs: int, lr_ranges: dict[str, tuple[float, float]]
            ) -> dict[str, Any]:
    """The product's search space, suggested the same way (names, ranges, order)."""
    name = trial.suggest_categorical("optimizer", list(OPTIMIZERS))
    scheduler = trial.suggest_categorical("scheduler", list(SCHEDULERS))
    hp: dict[str, Any] = {"optimizer": name, "scheduler": scheduler,
                          "lr": trial.suggest_float(f"lr_{name}", *lr_ranges[name], log=True)}
    for key, low, high, log in OPTIMIZERS[name][2]:
        hp[key] = trial.suggest_float(key, low, high, log=log)
    return {**hp, **suggest_schedule(trial, scheduler, epochs)}


def suggest_schedule(trial: optuna.Trial, scheduler: str, epochs: int) -> dict[str, Any]:
    """The sub-parameters of ``scheduler`` for a run of ``epochs``, suggested as the product
    suggests them (``sweeps.optim.schedulers``: lengths relative to the run)."""
    n = max(1, epochs)

    def length(divisor: int) -> int:
        return max(1, n // divisor)

    if scheduler == "step":
        return {"step_size": trial.suggest_int("step_size", length(20), length(2)),
                "step_gamma": trial.suggest_float("step_gamma", 0.1, 0.9)}
    if scheduler == "exponential":
        return {"exp_gamma": trial.suggest_float("exp_gamma", 0.001 ** (1 / n),
                                                 0.5 ** (1 / n))}
    if scheduler == "onecycle":
        return {"pct_start": trial.suggest_float("pct_start", 0.05, 0.5)}
    if scheduler == "plateau":
        return {"plateau_factor": trial.suggest_float("plateau_factor", 0.1, 0.9),
                "plateau_patience": trial.suggest_int("plateau_patience", length(100),
                                                      length(10))}
    return {}


def make_optimizer(hp: dict[str, Any], params: list[nn.Parameter]) -> torch.optim.Optimizer:
    torch_name, fixed, searched = OPTIMIZERS[hp["optimizer"]]
    cls: Callable[..., torch.optim.Optimizer] = getattr(torch.optim, torch_name)
    return cls(params, lr=hp["lr"], **fixed, **{key: hp[key] for key, *_ in searched})


def make_scheduler(hp: dict[str, Any], optimizer: torch.optim.Optimizer, epochs: int,
                   steps: int) -> Any:
    """The scheduler, or None; ``onecycle`` spans all ``epochs * steps`` optimizer steps."""
    name = hp["scheduler"]
    if name == "step":
        return lr_scheduler.StepLR(optimizer, hp["step_size"], gamma=hp["step_gamma"])
    if name == "exponential":
        return lr_scheduler.ExponentialLR(optimizer, gamma=hp["exp_gamma"])
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if name == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=hp["lr"],
                                       total_steps=max(2, epochs * steps),
                                       pct_start=hp["pct_start"], cycle_momentum=False)
    if name == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, factor=hp["plateau_factor"],
                                              patience=hp["plateau_patience"])
    return None
