"""Tiny objectives for tests, loaded as ``tests.toy_objectives:<name>``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


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
