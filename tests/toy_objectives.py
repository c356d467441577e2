"""Tiny objectives for tests, loaded as ``tests.toy_objectives:<name>``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from objectives.digits import CLASSES, load_splits
from objectives.module import ModuleObjective


@dataclass
class Quadratic:
    """``sum(scale * x**2)``: SGD diverges (to inf, then NaN) once lr > 1 / scale."""

    dim: int = 4
    scale: float = 1.0
    name: str = field(default="tests.toy_objectives:Quadratic", init=False)
    default_epochs: int = field(default=100, init=False)

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        start = torch.linspace(1.0, 2.0, self.dim, dtype=torch.float64, device=device)
        return {"x": start}

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return (self.scale * params["x"] ** 2).sum()

    def arguments(self) -> dict[str, Any]:
        return {"dim": self.dim, "scale": self.scale}


def full_batch_digits(hidden: int = 8, seed: int = 0) -> ModuleObjective:
    """A real MLP, full batch: cross-entropy of linear, ReLU, linear on the whole train split
    of the digits (float64), one step per epoch (the product's ``digits`` is mini-batch)."""
    inputs, targets = load_splits(seed, dtype=torch.float64).train
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(inputs.shape[1], hidden), nn.ReLU(),
                              nn.Linear(hidden, CLASSES)).double()
    return ModuleObjective(model, inputs, targets, loss_fn=nn.functional.cross_entropy,
                           name="tests.toy_objectives:full_batch_digits", default_epochs=100,
                           arguments={"hidden": hidden, "seed": seed})
