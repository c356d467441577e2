"""An objective whose loss is the number of torch intra-op threads of the process that trains
it, loaded as ``tests.sweeps.parallel.thread_objectives:ThreadCount``: a trial's value says
how many threads its worker ran with."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class ThreadCount:
    """``torch.get_num_threads()`` as the loss (its gradient is zero); each evaluation takes
    ``pause`` seconds, so that a second worker process has trials left to run."""

    pause: float = 0.03
    name: str = field(default="tests.sweeps.parallel.thread_objectives:ThreadCount", init=False)
    default_epochs: int = field(default=10, init=False)

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        return {"x": torch.ones(2, dtype=torch.float64, device=device)}

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        time.sleep(self.pause)
        return params["x"].sum() * 0.0 + float(torch.get_num_threads())

    def arguments(self) -> dict[str, Any]:
        return {"pause": self.pause}
