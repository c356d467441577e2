"""Per-tensor statistics of a mini-batch training run, seen from the objective's side.

The training loop reports statistics over all parameters together; ``TensorWatch`` wraps a
mini-batch objective so that the same run also yields them per parameter tensor. It is itself
a mini-batch objective that hands every call on to the one it wraps, and on the way sums, per
tensor and step, |theta| before the step (``batch_loss`` sees the parameters before their
step), |grad| (a gradient hook on each of the trial's parameters) and |delta theta| (the next
``batch_loss`` or ``validate`` call sees the parameters after the step). ``validate``, which
the loop calls after each epoch, closes the epoch.

    watch = TensorWatch(objective)
    result = train(watch, hp, epochs)
    watch.sums()  # (epochs, tensors, 3): per-step means of sum |theta|, |grad|, |delta theta|
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from objectives import MiniBatchObjective, TrialState

__all__ = ["TensorWatch"]


class TensorWatch:
    """A mini-batch objective that records per-tensor statistics of the run training it.

    One watch observes one run: the parameters it first sees are the ones it watches.
    """

    def __init__(self, objective: MiniBatchObjective) -> None:
        self.objective = objective
        self.name = objective.name
        self.default_epochs = objective.default_epochs
        self.steps_per_epoch = 0  # steps of the first epoch closed (0: none yet)
        self._leaves: list[torch.Tensor] | None = None
        self._before: list[torch.Tensor] | None = None  # the parameters before the last step
        self._sums: torch.Tensor | None = None  # (tensors, 3) sums of the epoch in progress
        self._steps = 0  # steps of the epoch in progress
        self._epochs: list[torch.Tensor] = []  # (tensors, 3) per-step means of each epoch

    # -- the objective, handed on ------------------------------------------------------------

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        return self.objective.init_params(device)

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.objective.loss(params)

    def arguments(self) -> dict[str, Any]:
        return self.objective.arguments()

    def start_trial(self, device: torch.device) -> TrialState:
        return self.objective.start_trial(device)

    def batches(self, epoch: int, device: torch.device) -> list[torch.Tensor]:
        return self.objective.batches(epoch, device)

    def batch_loss(self, params: dict[str, torch.Tensor], state: TrialState,
                   batch: torch.Tensor) -> torch.Tensor:
        import torch

        leaves = list(params.values())
        if self._leaves is None:
            self._watch(leaves)
        self._end_step(leaves)
        assert self._sums is not None
        with torch.no_grad():
            self._before = [p.detach().clone() for p in leaves]
            self._sums[:, 0] += torch.stack([b.abs().sum() for b in self._before])
        self._steps += 1
        return self.objective.batch_loss(params, state, batch)

    def validate(self, params: dict[str, torch.Tensor],
                 state: TrialState) -> dict[str, torch.Tensor]:
        if self._sums is not None:
            self._end_step(list(params.values()))
            self._epochs.append(self._sums / max(1, self._steps))
            self.steps_per_epoch = self.steps_per_epoch or self._steps
            self._sums = self._sums.new_zeros(self._sums.shape)
            self._steps = 0
        return self.objective.validate(params, state)

    # -- what it saw -------------------------------------------------------------------------

    def sums(self) -> np.ndarray:
        """(epochs closed, tensors, 3): per epoch, the means over its steps of the sums of
        |theta| before the step, |grad| and |delta theta|, per tensor (float64)."""
        import torch

        if not self._epochs:
            return np.empty((0, 0, 3))
        return torch.stack(self._epochs).cpu().numpy().astype(np.float64)

    def _watch(self, leaves: list[torch.Tensor]) -> None:
        import torch

        like = leaves[0]
        wide = torch.float32 if like.device.type == "mps" else torch.float64
        self._leaves = leaves
        self._sums = torch.zeros((len(leaves), 3), dtype=wide, device=like.device)
        for i, p in enumerate(leaves):
            p.register_hook(functools.partial(self._on_grad, i))

    def _on_grad(self, i: int, grad: torch.Tensor) -> None:
        assert self._sums is not None
        self._sums[i, 1] += grad.detach().abs().sum()

    def _end_step(self, leaves: list[torch.Tensor]) -> None:
        """Add the update of the step just taken, if one was (the parameters are after it)."""
        import torch

        if self._before is None or self._sums is None:
            return
        with torch.no_grad():
            self._sums[:, 2] += torch.stack([(p.detach() - b).abs().sum()
                                             for p, b in zip(leaves, self._before)])
        self._before = None
