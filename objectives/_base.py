"""The objective protocol: what a sweep optimises."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

__all__ = ["Objective", "evaluate"]


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
#   evaluate(params) -> dict[str, float]: extra metrics of trained parameters (see below);
#   batched_loss(params) -> Tensor: the loss of every row of parameters stacked along a new
#     first dimension, equal row by row to ``loss`` (batched trials use ``torch.func.vmap``
#     of ``loss`` when it is missing).


def evaluate(objective: Objective, params: dict[str, torch.Tensor]) -> dict[str, float]:
    """Extra metrics of trained ``params`` (e.g. test accuracy), if the objective defines an
    optional ``evaluate(params) -> dict[str, float]``; else none."""
    method = getattr(objective, "evaluate", None)
    return dict(method(params)) if callable(method) else {}
