"""The seed article's portfolio-rebalancing loss, where SGD at lr=0.01 looks frozen.

16 share counts ``s`` with prices ``p``; weights ``w = s*p / sum(s*p)``; MSE of ``w`` to a
target weight vector that spreads ``1 - cash_buffer`` evenly over the positions and keeps
``cash_buffer`` in the last one (the cash line, price 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._errors import ObjectiveError

__all__ = ["LR_RANGES", "Rebalance"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_SGD_LR = (1e-3, 1e7)  # its gradients are about 1e-5: plain steps need large learning rates
_ADAPTIVE_LR = (1e-5, 1e2)  # per-element normalised steps: about a parameter change per step
LR_RANGES = {"sgd": _SGD_LR, "momentum": _SGD_LR, "nesterov": _SGD_LR, "adam": _ADAPTIVE_LR,
             "adamw": _ADAPTIVE_LR, "rmsprop": _ADAPTIVE_LR, "adagrad": _ADAPTIVE_LR}


@dataclass
class Rebalance:
    size: int = 16  # number of positions, the last one is cash
    seed: int = 10  # numpy seed for the starting shares and the prices
    cash_buffer: float = 0.001  # target weight of the cash line
    dtype: str = "float64"  # float64 or float32
    name: str = field(default="rebalance", init=False)
    default_epochs: int = field(default=10_000, init=False)

    def __post_init__(self) -> None:
        if self.size < 2:
            raise ObjectiveError("objective-arg size", self.size, "use an integer >= 2")
        if not 0.0 <= self.cash_buffer < 1.0:
            raise ObjectiveError("objective-arg cash_buffer", self.cash_buffer, "use 0 <= x < 1")
        if self.dtype not in _DTYPES:
            raise ObjectiveError("objective-arg dtype", self.dtype, "use float64 or float32")
        if self.seed < 0:
            raise ObjectiveError("objective-arg seed", self.seed, "use an integer >= 0")
        rng = np.random.RandomState(self.seed)  # the same stream as numpy.random.seed(seed)
        torch_dtype = _DTYPES[self.dtype]
        self._shares = torch.tensor(rng.uniform(1, 50, size=self.size), dtype=torch_dtype)
        prices = torch.tensor(rng.uniform(1, 100, size=self.size), dtype=torch_dtype)
        prices[-1] = 1.0
        self._prices = prices
        weight = (1 - self.cash_buffer) / (self.size - 1)
        target = [weight] * (self.size - 1) + [self.cash_buffer]
        self._target = torch.tensor(target, dtype=torch_dtype)
        self._mse = torch.nn.MSELoss()
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def lr_ranges(self) -> dict[str, tuple[float, float]]:
        """The learning-rate interval a sweep searches per optimizer (log scale)."""
        return dict(LR_RANGES)

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        return {"shares": self._shares.to(device).clone()}

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        shares = params["shares"].clamp(0.0)
        prices, target = self._constants(shares.device)
        market_value = shares * prices
        weights = market_value / market_value.sum()
        return self._mse(weights, target)

    def batched_loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """``loss`` of every row of stacked parameters (shape (trials, size)) at once.

        The same arithmetic row by row (MSE as the mean of squared differences), so each
        row's value and gradient equal ``loss`` of that row bit for bit (tested); batched
        trials use it instead of ``torch.func.vmap``, which costs more than the loss here.
        """
        shares = params["shares"].clamp(0.0)
        prices, target = self._constants(shares.device)
        market_value = shares * prices
        weights = market_value / market_value.sum(-1, keepdim=True)
        return ((weights - target) ** 2).mean(-1)

    def _constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._on_device:
            self._on_device[device] = (self._prices.to(device), self._target.to(device))
        return self._on_device[device]

    def arguments(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "seed": self.seed,
            "cash_buffer": self.cash_buffer,
            "dtype": self.dtype,
        }
