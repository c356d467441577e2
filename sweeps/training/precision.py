"""Mixed precision (``--precision``): a mini-batch objective trained under ``torch.autocast``.

``fp32`` (the default) trains the objective as it is. ``bf16`` and ``fp16`` train a copy of it
whose module runs under ``torch.autocast`` at bfloat16 or float16 (``with_autocast``, which
``objectives.DatasetObjective`` has): the forward pass and the loss, training and held-out;
parameters, gradients, optimizer state, BatchNorm statistics, losses and scores stay float32.
float16's narrow exponent makes small gradients vanish, so an ``fp16`` trial's loss is scaled
before the backward pass and its gradients unscaled after it (``torch.amp.GradScaler``, on
the CPU as on CUDA): a step whose gradients overflowed is skipped and the scale halved. Each
trial has a scale of its own, so ``fp16`` trials do not stack (``sweeps.batched.minibatch``).

A full-batch objective has no ``with_autocast``: ``bf16`` or ``fp16`` is refused for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeps.errors import UsageError

if TYPE_CHECKING:
    import torch

    from objectives import Objective

__all__ = ["OptimizerSteps", "ScaledSteps", "at_precision", "autocast_dtype", "loss_scaled",
           "optimizer_steps"]

_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}  # torch's names of the autocast dtypes


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (fp32: None)."""
    import torch

    return getattr(torch, _DTYPES[precision]) if precision in _DTYPES else None


def at_precision(objective: Objective, precision: str) -> Objective:
    """``objective`` to train at ``precision``: itself at fp32, else its copy under autocast;
    ``UsageError`` for an objective that cannot run under autocast."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return objective
    with_autocast = getattr(objective, "with_autocast", None)
    if not callable(with_autocast):
        raise UsageError("precision", precision, f"objective {objective.name} trains in its "
                         "own dtype (only mini-batch objectives with with_autocast, as "
                         "objectives.DatasetObjective, take bf16 or fp16): use fp32")
    return with_autocast(dtype)


def loss_scaled(objective: Objective) -> bool:
    """Whether ``objective``'s trials scale their loss: it runs under autocast at float16."""
    import torch

    return getattr(objective, "autocast", None) == torch.float16


class OptimizerSteps:
    """One training step's backward pass and update, as they are at fp32 and bf16."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def backward(self, loss: torch.Tensor) -> None:
        """The gradients of ``loss``, in the parameters' ``grad``."""
        loss.backward()

    def step(self) -> None:
        """The optimizer's update with those gradients."""
        self.optimizer.step()


class ScaledSteps(OptimizerSteps):
    """fp16's steps: the loss scaled for the backward pass, the gradients unscaled after it
    (what the statistics, the clipping and the update see), and an update skipped where they
    overflowed. A skipped step's non-finite gradients are recorded as zeros: the step did not
    happen, and the trial goes on at half the scale."""

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        import torch

        super().__init__(optimizer)
        self.scaler = torch.amp.GradScaler(device.type)

    def backward(self, loss: torch.Tensor) -> None:
        import torch

        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)

    def step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()


def optimizer_steps(objective: Objective, optimizer: torch.optim.Optimizer,
                    device: torch.device) -> OptimizerSteps:
    """The steps of a trial of ``objective``: scaled where its loss is (``loss_scaled``)."""
    if loss_scaled(objective):
        return ScaledSteps(optimizer, device)
    return OptimizerSteps(optimizer)
