"""Learning-rate schedulers by name, each a small builder over ``torch.optim.lr_scheduler`` and
the sub-parameters it searches, with their defaults.

One scheduler step per epoch (one step is one epoch of a full-batch objective; a mini-batch
objective still steps its scheduler once per epoch), except ``onecycle``, which spans the run's
total number of optimizer steps and steps after every batch (``SchedulerSpec.per_step``).
``plateau`` steps on the (epoch's mean training) loss.
A builder gets every sub-parameter resolved (given, else its default for the run's epochs), and
sets each parameter group's schedule from that group's own lr, so that one scheduler can drive
several groups (the batched path tabulates many trials' schedules at once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeps.optim.subparams import Decay, Length, SubParam, settings

if TYPE_CHECKING:
    import torch

__all__ = ["SCHEDULERS", "SchedulerSpec", "build_scheduler"]

Builder = Callable[["torch.optim.Optimizer", int, dict[str, float]], Any]


def _none(optimizer: torch.optim.Optimizer, epochs: int, s: dict[str, float]) -> None:
    return None


def _step(optimizer: torch.optim.Optimizer, epochs: int, s: dict[str, float]) -> Any:
    from torch.optim.lr_scheduler import StepLR

    return StepLR(optimizer, step_size=int(s["step_size"]), gamma=s["step_gamma"])


def _exponential(optimizer: torch.optim.Optimizer, epochs: int, s: dict[str, float]) -> Any:
    from torch.optim.lr_scheduler import ExponentialLR

    return ExponentialLR(optimizer, gamma=s["exp_gamma"])


def _cosine(optimizer: torch.optim.Optimizer, epochs: int, s: dict[str, float]) -> Any:
    from torch.optim.lr_scheduler import CosineAnnealingLR

    return CosineAnnealingLR(optimizer, T_max=max(1, epochs))


def _onecycle(optimizer: torch.optim.Optimizer, epochs: int, s: dict[str, float]) -> Any:
    """One cycle over ``epochs`` scheduler steps: the run's total number of optimizer steps
    (epochs x batches per epoch for a mini-batch objective); it steps after every batch."""
    from torch.optim.lr_scheduler import OneCycleLR

    # cycle_momentum=False: cycling would turn plain SGD into momentum SGD, and Adagrad
    # has no momentum to cycle at all. Each group peaks at its own lr.
    return OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=max(2, epochs),
        pct_start=s["pct_start"],
        cycle_momentum=False,
    )


def _plateau(optimizer: torch.optim.Optimizer, epochs: int, s: dict[str, float]) -> Any:
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    return ReduceLROnPlateau(optimizer, factor=s["plateau_factor"],
                             patience=int(s["plateau_patience"]))


@dataclass(frozen=True)
class SchedulerSpec:
    """How to build one scheduler and the sub-parameters the search samples for it."""

    build: Builder  # (optimizer, epochs, every sub-parameter resolved) -> scheduler or None
    params: tuple[SubParam, ...] = ()  # sub-parameters the search samples
    steps_on_loss: bool = False  # step(loss) instead of step()
    per_step: bool = False  # steps after every batch, over the total steps, not per epoch

    @property
    def searched(self) -> tuple[str, ...]:
        """The names of the sub-parameters the search samples."""
        return tuple(p.name for p in self.params)

    def settings(self, options: Mapping[str, float], epochs: int) -> dict[str, float]:
        """Every sub-parameter for a run of ``epochs``: from ``options``, else its default."""
        return settings(self.params, options, epochs)


SCHEDULERS: dict[str, SchedulerSpec] = {
    "none": SchedulerSpec(_none),
    "step": SchedulerSpec(_step, (
        SubParam("step_size", Length(4), Length(20), Length(2), integer=True),
        SubParam("step_gamma", 0.5, 0.1, 0.9),
    )),
    "exponential": SchedulerSpec(_exponential, (
        # the lr falls to 1/100 over the run by default; searched: to 1/1000 .. 1/2
        SubParam("exp_gamma", Decay(0.01), Decay(0.001), Decay(0.5)),
    )),
    "cosine": SchedulerSpec(_cosine),
    "onecycle": SchedulerSpec(_onecycle, (SubParam("pct_start", 0.3, 0.05, 0.5),),
                              per_step=True),
    "plateau": SchedulerSpec(_plateau, (
        SubParam("plateau_factor", 0.5, 0.1, 0.9),
        SubParam("plateau_patience", Length(20), Length(100), Length(10), integer=True),
    ), steps_on_loss=True),
}


def build_scheduler(
    name: str, optimizer: torch.optim.Optimizer, epochs: int, options: Mapping[str, float],
    steps_per_epoch: int = 1,
) -> Any:
    """The scheduler ``name`` for ``optimizer`` over ``epochs`` epochs of ``steps_per_epoch``
    optimizer steps, or None. Sub-parameter defaults follow the epochs; a ``per_step``
    scheduler spans ``epochs * steps_per_epoch`` steps."""
    spec = SCHEDULERS[name]
    length = epochs * steps_per_epoch if spec.per_step else epochs
    return spec.build(optimizer, length, spec.settings(options, epochs))
