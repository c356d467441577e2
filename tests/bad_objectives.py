"""Objectives that misbehave on purpose, loaded as ``tests.bad_objectives:<name>`` by the
reliability tests (a real ``sweeps.run`` process imports them from the repository root)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Broken:
    """Its loss raises at the very first epoch: no trial of it can ever start."""

    name: str = field(default="tests.bad_objectives:Broken", init=False)
    default_epochs: int = field(default=10, init=False)

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        return {"x": torch.ones(3, dtype=torch.float64, device=device)}

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        raise RuntimeError("Broken objective: loss is not implemented")

    def arguments(self) -> dict[str, Any]:
        return {}


@dataclass
class FailsAt:
    """``sum(x**2)`` until epoch ``epoch``; there it raises (``mode=raise``) or returns a
    finite loss whose gradient is NaN (``mode=nan_grad``).

    It counts its own calls from ``init_params`` on, so run it one trial at a time
    (``--batch 1``): a batch of trials shares one sequence of calls."""

    epoch: int = 5
    mode: str = "raise"
    name: str = field(default="tests.bad_objectives:FailsAt", init=False)
    default_epochs: int = field(default=20, init=False)
    _calls: int = field(default=0, init=False, repr=False)

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        self._calls = 0  # a new trial starts from epoch 0
        return {"x": torch.linspace(1.0, 2.0, 4, dtype=torch.float64, device=device)}

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        epoch, self._calls = self._calls, self._calls + 1
        x = params["x"]
        loss = (x**2).sum()
        if epoch < self.epoch:
            return loss
        if self.mode == "raise":
            raise RuntimeError(f"objective failed at epoch {epoch}")
        # where() selects 0 (finite value), but sqrt of a negative number back-propagates
        # 0 * nan = nan into x: a NaN gradient under a finite loss.
        hidden = torch.where(x > 1e9, torch.sqrt(-x.abs() - 1.0), torch.zeros_like(x))
        return loss + hidden.sum()

    def arguments(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "mode": self.mode}
