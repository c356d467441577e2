"""Learning-rate schedules of batched trials, read off torch's own schedulers.

Batched trials share one update rule per optimizer, so no scheduler object can drive a trial's
learning rate directly. Each trial's schedule is instead built by ``build_scheduler``, as the
sequential loop builds it, over a stand-in optimizer (one tiny parameter group per trial, with
the trial's lr; the schedules read and write nothing but the lr), and stepped once per epoch:

- a schedule that depends only on the epoch is tabulated up front (``lr_tables``); trials that
  share a scheduler and its settings share one scheduler object, a parameter group each;
- a schedule that steps on the loss (``plateau``) is stepped after every epoch with its trial's
  loss (``LossSchedule``).

``tests/sweeps/batched/test_batched.py`` checks that every table equals, bit for bit, the lr
the sequential loop's optimizer sees at each epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sweeps.optim.schedulers import SCHEDULERS, build_scheduler

if TYPE_CHECKING:
    import torch

    from sweeps.training.hparams import Hyperparams

__all__ = ["TABULATED", "LossSchedule", "lr_table", "lr_tables"]

# schedulers whose lr depends only on the epoch: tabulated before the first epoch
TABULATED: tuple[str, ...] = tuple(n for n, s in SCHEDULERS.items() if not s.steps_on_loss)


def lr_table(scheduler: str, lr: float, epochs: int, options: Mapping[str, float]) -> list[float]:
    """The learning rate at each of ``epochs`` epochs (ValueError for a schedule that steps on
    the loss)."""
    return _tables(scheduler, [lr], epochs, options)[0]


def lr_tables(hps: Sequence[Hyperparams], epochs: int,
              steps_per_epoch: int = 1) -> list[list[float]]:
    """Each configuration's learning rate at each of the ``epochs * steps_per_epoch`` steps
    of a run, in order: a schedule that steps per epoch keeps an epoch's lr for all of its
    steps; one that spans the run's steps (``onecycle``) moves at every step."""
    groups: dict[tuple[str, tuple[tuple[str, float], ...]], list[int]] = {}
    for i, hp in enumerate(hps):
        resolved = SCHEDULERS[hp.scheduler].settings(hp.options, epochs)
        groups.setdefault((hp.scheduler, tuple(resolved.items())), []).append(i)
    tables: list[list[float]] = [[] for _ in hps]
    for (scheduler, settings), rows in groups.items():
        lrs = [hps[i].lr for i in rows]
        for i, table in zip(rows, _tables(scheduler, lrs, epochs, dict(settings),
                                          steps_per_epoch)):
            tables[i] = table
    return tables


def _tables(scheduler: str, lrs: list[float], epochs: int, options: Mapping[str, float],
            steps_per_epoch: int = 1) -> list[list[float]]:
    """The lr at each step of one schedule started from each of ``lrs``."""
    if scheduler not in TABULATED:
        raise ValueError(f"{scheduler} steps on the loss: its lr has no table")
    per_step = SCHEDULERS[scheduler].per_step
    optimizer = _stand_in(lrs)
    schedule = build_scheduler(scheduler, optimizer, epochs, options,
                               steps_per_epoch=steps_per_epoch)
    length = epochs * steps_per_epoch if per_step else epochs
    repeat = 1 if per_step else steps_per_epoch
    if schedule is None:
        return [[lr] * (length * repeat) for lr in _lrs(optimizer)]
    optimizer.step()  # no gradients, nothing moves; torch's schedulers expect a step first
    groups = optimizer.param_groups
    tables = [[group["lr"]] for group in groups] if length > 0 else [[] for _ in groups]
    for _ in range(length - 1):
        schedule.step()
        for table, group in zip(tables, groups):
            table.append(group["lr"])
    if repeat > 1:
        tables = [[lr for lr in table for _ in range(repeat)] for table in tables]
    return tables


class LossSchedule:
    """The schedule of one trial that steps on its loss: torch's scheduler over a stand-in."""

    def __init__(self, scheduler: str, lr: float, epochs: int,
                 options: Mapping[str, float]) -> None:
        self.optimizer = _stand_in([lr])
        self.schedule = build_scheduler(scheduler, self.optimizer, epochs, options)
        self.optimizer.step()  # as in lr_tables
        self.lr: float = _lrs(self.optimizer)[0]  # the lr of the coming epoch

    def step(self, loss: float) -> float | None:
        """Take the loss of the epoch just run; the lr of the next one if it changed, else None."""
        self.schedule.step(loss)
        lr = _lrs(self.optimizer)[0]
        if lr == self.lr:
            return None
        self.lr = lr
        return lr


def _stand_in(lrs: list[float]) -> torch.optim.Optimizer:
    """An optimizer with one parameter group per lr and nothing else, for a scheduler to set
    their lrs. Not a real ``torch.optim`` optimizer: building the first one of a process
    imports ``torch._dynamo`` (the README's memory figures show its cost) in a batched sweep
    that otherwise never builds one."""
    import torch

    class StandIn(torch.optim.Optimizer):
        def __init__(self) -> None:  # no Optimizer.__init__: no parameters, no hooks
            self.defaults: dict[str, object] = {}
            self.state = {}  # type: ignore[assignment]
            self.param_groups = [{"params": [], "lr": lr} for lr in lrs]

        def step(self, closure: object = None) -> None:  # type: ignore[override]
            return None

    return StandIn()


def _lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [group["lr"] for group in optimizer.param_groups]
