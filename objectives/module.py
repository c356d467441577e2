"""An objective made from a ``torch.nn.Module``, its data and a loss function.

The module only supplies the architecture and the initial parameters: ``loss`` evaluates it
with ``torch.func.functional_call`` on the tensors it is given, so the training loop owns the
parameters. A user objective is a few lines::

    objective = ModuleObjective(
        model, inputs, targets, loss_fn=torch.nn.functional.cross_entropy,
        name=f"{__name__}:objective",
    )

Loaded by its import path (``--objective pkg.module:objective``), it is named by that path
whatever ``name`` says (``objectives.build``): the name a study and its export store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.func import functional_call

from ._errors import ObjectiveError

__all__ = ["ModuleObjective", "check_count", "device_of", "initial_parameters"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# inputs, targets and buffers, moved to one device
_DeviceData = tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]


class ModuleObjective:
    """``loss_fn(module(inputs), targets)`` as a function of the module's named parameters.

    The initial parameters and buffers are snapshotted at construction, so ``init_params``
    returns the same values however the module is used (or trained) afterwards. The module's
    forward should not update its own state (e.g. batch-norm running statistics in training
    mode), or ``loss`` stops being a pure function of the parameters.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        loss_fn: LossFn,
        name: str,
        default_epochs: int = 500,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        check_count("default_epochs", default_epochs)
        initial = initial_parameters(module)
        self.name = name
        self.default_epochs = default_epochs
        self._module = module
        self._initial = initial
        self._buffers = {key: b.detach().clone() for key, b in module.named_buffers()}
        self._data = (inputs.detach(), targets.detach())
        self._loss_fn = loss_fn
        self._arguments = dict(arguments or {})
        self._on_device: dict[torch.device, _DeviceData] = {}

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Copies of the module's parameters as they were at construction, on ``device``."""
        return {key: p.to(device, copy=True) for key, p in self._initial.items()}

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """``loss_fn`` of the module's output on the objective's inputs, with ``params``."""
        inputs, targets, _ = self._on(device_of(params))
        return self._loss_fn(self.forward(params, inputs), targets)

    def forward(self, params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """The module's output for ``inputs`` (moved to the parameters' device)."""
        device = device_of(params)
        _, _, buffers = self._on(device)
        return functional_call(self._module, {**buffers, **params}, (inputs.to(device),))

    def arguments(self) -> dict[str, Any]:
        """The arguments given at construction (logged with the sweep)."""
        return dict(self._arguments)

    def _on(self, device: torch.device) -> _DeviceData:
        if device not in self._on_device:
            inputs, targets = self._data
            buffers = {key: b.to(device) for key, b in self._buffers.items()}
            self._on_device[device] = (inputs.to(device), targets.to(device), buffers)
        return self._on_device[device]


def check_count(field: str, value: object, minimum: int = 1) -> None:
    """``ObjectiveError`` unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ObjectiveError(field, value, f"use an integer >= {minimum}")


def initial_parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of ``module``'s parameters as they are now; ``ObjectiveError`` if it has none."""
    initial = {key: p.detach().clone() for key, p in module.named_parameters()}
    if not initial:
        raise ObjectiveError("module", type(module).__name__, "use a module with parameters")
    return initial


def device_of(params: Mapping[str, torch.Tensor]) -> torch.device:
    """The device of the first of ``params``."""
    return next(iter(params.values())).device
