"""The ``step`` hook of a ``DatasetObjective``: ``step(model, batch) -> loss`` for models that
take more than one input, or batches that are not (inputs, targets) pairs (a dict, say).

``model`` is a ``Bound`` module: called like the module (any positional and keyword
arguments), it runs the module with one trial's parameters and buffers
(``torch.func.functional_call``), so the same hook serves one trial and, under ``vmap``, a
stack of them. ``batch`` is the batch as loaded, on the trial's device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.func import functional_call

from ._errors import ObjectiveError
from .data import describe

__all__ = ["Bound", "Step", "scalar"]


class Bound:
    """``module`` run with ``tensors`` (parameters and buffers by name) in place of its own."""

    def __init__(self, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        self.module = module
        self.tensors = tensors

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self.module, self.tensors, args, kwargs)

    @property
    def training(self) -> bool:
        """The module's mode: True while training, False while scoring held-out data."""
        return self.module.training


Step = Callable[[Bound, Any], torch.Tensor]


def scalar(field: str, loss: Any) -> torch.Tensor:
    """``loss`` if it is a 0-dim tensor (per trial, under ``vmap``); else ``ObjectiveError``
    naming ``field`` (the function that returned it)."""
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise ObjectiveError(field, f"a loss of {describe(loss)}",
                             "return the batch's loss as a scalar tensor (0-dim)")
    return loss
