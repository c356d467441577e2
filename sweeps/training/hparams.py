"""The hyperparameters of one training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Hyperparams"]


@dataclass(frozen=True)
class Hyperparams:
    optimizer: str  # a name in sweeps.optim.OPTIMIZERS
    lr: float  # initial (or, for onecycle, peak) learning rate
    scheduler: str = "none"  # a name in sweeps.optim.SCHEDULERS
    options: dict[str, float] = field(default_factory=dict)  # sub-parameters, e.g. momentum

    def to_dict(self) -> dict[str, Any]:
        """Flat form: optimizer, lr, scheduler and every sub-parameter."""
        return {"optimizer": self.optimizer, "lr": self.lr, "scheduler": self.scheduler,
                **self.options}

    @classmethod
    def from_dict(cls, flat: dict[str, Any]) -> Hyperparams:
        rest = {k: v for k, v in flat.items() if k not in ("optimizer", "lr", "scheduler")}
        return cls(flat["optimizer"], float(flat["lr"]), flat.get("scheduler", "none"), rest)
