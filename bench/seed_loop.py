"""The seed article's problem and its bare training loop: plain torch, no diagnostics, no
tracking. This is the floor every other timing is compared with.

The problem is built exactly as the article builds it (``np.random.seed(10)``, 16 positions,
cash buffer 0.001, float64), which is the same data as the ``rebalance`` objective's defaults.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SeedProblem", "bare_loop", "optimize", "seed_problem"]


@dataclass(frozen=True)
class SeedProblem:
    starting_shares: torch.Tensor  # the parameters' initial values
    prices: torch.Tensor  # price per share; the last position is cash at 1
    target_weights: torch.Tensor  # the weights the loss pulls towards


def seed_problem(position_count: int = 16, cash_buffer: float = 0.001) -> SeedProblem:
    rng = np.random.RandomState(10)  # the article's np.random.seed(10) stream
    shares = torch.tensor(rng.uniform(low=1, high=50, size=position_count), dtype=torch.float64)
    prices = torch.tensor(rng.uniform(low=1, high=100, size=position_count), dtype=torch.float64)
    prices[-1] = 1.0
    weight = (1 - cash_buffer) / (position_count - 1)
    target = torch.tensor([weight] * (position_count - 1) + [cash_buffer], dtype=torch.float64)
    return SeedProblem(shares, prices, target)


def optimize(final_shares: torch.Tensor, target_weight: torch.Tensor, prices: torch.Tensor,
             loss_func: torch.nn.Module) -> torch.Tensor:
    """The article's loss, as written there."""
    final_shares = final_shares.clamp(0.0)
    mv = torch.multiply(final_shares, prices)
    w = torch.div(mv, torch.sum(mv))
    return loss_func(w, target_weight)


def bare_loop(epochs: int, lr: float = 0.01) -> float:
    """Seconds taken by ``epochs`` steps of the article's loop (setup excluded)."""
    problem = seed_problem()
    x_param = torch.nn.Parameter(problem.starting_shares.clone(), requires_grad=True)
    loss_func = torch.nn.MSELoss()
    optimizer = torch.optim.SGD([x_param], lr=lr)
    start = time.perf_counter()
    for _epoch in range(epochs):
        optimizer.zero_grad()
        loss_incurred = optimize(final_shares=x_param, target_weight=problem.target_weights,
                                 prices=problem.prices, loss_func=loss_func)
        loss_incurred.backward()
        optimizer.step()
    return time.perf_counter() - start
