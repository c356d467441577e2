"""Learning-rate schedulers by name, each a small builder over ``torch.optim.lr_scheduler``.

One scheduler step per epoch (the objectives are full-batch). ``plateau`` steps on the loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["SCHEDULERS", "SchedulerSpec", "build_scheduler"]

Builder = Callable[["torch.optim.Optimizer", int, dict[str, float]], Any]


def _none(optimizer: torch.optim.Optimizer, epochs: int, o: dict[str, float]) -> None:
    return None


def _step(optimizer: torch.optim.Optimizer, epochs: int, o: dict[str, float]) -> Any:
    from torch.optim.lr_scheduler import StepLR

    step_size = int(o.get("step_size", max(1, epochs // 4)))
    return StepLR(optimizer, step_size=step_size, gamma=o.get("step_gamma", 0.5))


def _exponential(optimizer: torch.optim.Optimizer, epochs: int, o: dict[str, float]) -> Any:
    from torch.optim.lr_scheduler import ExponentialLR

    return ExponentialLR(optimizer, gamma=o.get("exp_gamma", 0.01 ** (1 / max(1, epochs))))


def _cosine(optimizer: torch.optim.Optimizer, epochs: int, o: dict[str, float]) -> Any:
    from torch.optim.lr_scheduler import CosineAnnealingLR

    return CosineAnnealingLR(optimizer, T_max=max(1, epochs))


def _onecycle(optimizer: torch.optim.Optimizer, epochs: int, o: dict[str, float]) -> Any:
    from torch.optim.lr_scheduler import OneCycleLR

    # cycle_momentum=False: cycling would turn plain SGD into momentum SGD, and Adagrad
    # has no momentum to cycle at all.
    max_lr = optimizer.param_groups[0]["lr"]
    return OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=max(2, epochs),
        pct_start=o.get("pct_start", 0.3),
        cycle_momentum=False,
    )


def _plateau(optimizer: torch.optim.Optimizer, epochs: int, o: dict[str, float]) -> Any:
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    patience = int(o.get("plateau_patience", max(1, epochs // 20)))
    return ReduceLROnPlateau(optimizer, factor=o.get("plateau_factor", 0.5), patience=patience)


@dataclass(frozen=True)
class SchedulerSpec:
    """How to build one scheduler and what the search samples for it."""

    build: Builder
    searched: tuple[str, ...] = ()  # sub-parameters the search space samples
    steps_on_loss: bool = False  # step(loss) instead of step()


SCHEDULERS: dict[str, SchedulerSpec] = {
    "none": SchedulerSpec(_none),
    "step": SchedulerSpec(_step, ("step_size", "step_gamma")),
    "exponential": SchedulerSpec(_exponential, ("exp_gamma",)),
    "cosine": SchedulerSpec(_cosine),
    "onecycle": SchedulerSpec(_onecycle, ("pct_start",)),
    "plateau": SchedulerSpec(_plateau, ("plateau_factor", "plateau_patience"), True),
}


def build_scheduler(
    name: str, optimizer: torch.optim.Optimizer, epochs: int, options: dict[str, float]
) -> Any:
    """The scheduler ``name`` for ``optimizer`` over ``epochs`` steps, or None."""
    return SCHEDULERS[name].build(optimizer, epochs, options)
