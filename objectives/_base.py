"""The objective protocol: what a sweep optimises; and the optional mini-batch protocol."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

__all__ = ["Batches", "MiniBatchObjective", "Objective", "TrialState", "evaluate",
           "is_minibatch"]


@runtime_checkable
class Objective(Protocol):
    """A differentiable loss over named parameter tensors.

    An objective is a pure description: ``init_params`` returns fresh tensors (the same
    values on every call) and ``loss`` is a function of the tensors it is given, so the
    training loop owns the parameters and can snapshot, restore or batch them.
    """

    name: str  # registry name, or "pkg.module:attr" for user objectives
    default_epochs: int  # epochs a sweep runs when the user gives none

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Fresh initial parameters, deterministic for the objective's own seed."""
        ...

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """A scalar loss of ``params`` (differentiable)."""
        ...

    def arguments(self) -> dict[str, Any]:
        """The arguments that rebuild this objective (logged, exported, compared on resume)."""
        ...


# Optional methods an objective may define:
#   evaluate(params[, buffers]) -> dict[str, float]: extra metrics of trained parameters (see
#     below); ``buffers`` (if it takes them) are the trial's own, e.g. BatchNorm statistics;
#   batched_loss(params) -> Tensor: the loss of every row of parameters stacked along a new
#     first dimension, equal row by row to ``loss`` (batched trials use ``torch.func.vmap``
#     of ``loss`` when it is missing).
# And an optional attribute (or property):
#   lr_ranges: Mapping[str, tuple[float, float]]: optimizer name -> (low, high), the
#     learning-rate interval a sweep searches for that optimizer (log scale) unless the user
#     gives --lr-min/--lr-max or --lr-range auto; optimizers it leaves out keep the defaults.
#     Without it a sweep centres the intervals on an LR range test of the objective, full
#     batch or mini-batch (``--lr-range fixed``: the fixed defaults; ``sweeps.study.opening``).
#   autocast: torch.dtype | None: the dtype a mini-batch objective's module runs at under
#     ``torch.autocast`` (None: its own), set on a copy by its ``with_autocast(dtype)``, which
#     a sweep's ``--precision bf16|fp16`` calls (``objectives.DatasetObjective`` has it; an
#     objective without it is refused them). A float16 one's trials scale their loss
#     (``sweeps.training.precision``).
#   prune_warmup: int: epochs a trial runs before the sweep's pruner may stop it (the first
#     rung of ``--pruner halving``); without it, a fifth of the run (``sweeps.study.pruners``).
#     ``objectives.DatasetObjective`` declares 1: its validation metric tells after an epoch.


def evaluate(objective: Objective, params: dict[str, torch.Tensor],
             buffers: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Extra metrics of trained ``params`` (e.g. test accuracy), if the objective defines an
    optional ``evaluate(params) -> dict[str, float]``; else none. ``buffers``, the trial's
    own (a mini-batch trial's BatchNorm statistics), go to an ``evaluate`` that takes them."""
    import inspect

    method = getattr(objective, "evaluate", None)
    if not callable(method):
        return {}
    if buffers is not None and "buffers" in inspect.signature(method).parameters:
        return dict(method(params, buffers=buffers))
    return dict(method(params))


@dataclass
class TrialState:
    """What a trial of a mini-batch objective owns besides its parameters."""

    buffers: dict[str, torch.Tensor]  # e.g. BatchNorm running statistics, updated in place
    generator: torch.Generator  # the trial's random stream (dropout), on its device


class Batches(Protocol):
    """An epoch's batches: counted before the epoch starts, then iterated in order. Each
    batch is opaque to the training loop, which hands it back to ``batch_loss``: a list of
    index tensors, or batches loaded as the epoch is iterated (each iteration the same)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...


@runtime_checkable
class MiniBatchObjective(Objective, Protocol):
    """An objective trained in mini-batches over a data set (optional capability).

    One epoch is one pass over ``batches(epoch, device)``; ``batch_loss`` is the loss of one
    of them in training mode and ``validate`` scores held-out data in eval mode. ``loss``
    (from ``Objective``) stays a pure function of the parameters for the tools that want one
    number (probes, the LR range test).
    """

    def start_trial(self, device: torch.device) -> TrialState:
        """Fresh buffers and a freshly seeded generator: the same for every trial."""
        ...

    def batches(self, epoch: int, device: torch.device) -> Batches:
        """The batches of ``epoch`` on ``device``, in the order to train them; the same for
        every trial (a function of the objective's seed and ``epoch``)."""
        ...

    def batch_loss(self, params: dict[str, torch.Tensor], state: TrialState,
                   batch: Any) -> torch.Tensor:
        """The scalar training loss of ``batch`` (training mode; updates ``state``)."""
        ...

    def validate(self, params: dict[str, torch.Tensor],
                 state: TrialState) -> dict[str, torch.Tensor]:
        """Held-out metrics in eval mode, as 0-dim tensors on the parameters' device
        (``val_loss``, ``val_<metric>``); empty without validation data."""
        ...

    # Optional, for batched trials (``sweeps.batched.minibatch``; without them a mini-batch
    # objective's trials run one at a time, and the log says so once):
    #   batch_losses(params, state, batch) -> Tensor: ``batch_loss`` of every row of params
    #     and ``state.buffers`` stacked along a new first dimension (one row per trial), on
    #     the same batch, every row drawing the same random numbers (all trials' streams
    #     start from the same seed); equal row by row to ``batch_loss``;
    #   validate_rows(params, state) -> dict[str, Tensor]: ``validate`` of every row, one
    #     value per row. ``objectives.DatasetObjective`` has both.


def is_minibatch(objective: Objective) -> bool:
    """True if ``objective`` trains in mini-batches (follows ``MiniBatchObjective``)."""
    return isinstance(objective, MiniBatchObjective)
