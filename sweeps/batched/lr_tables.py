"""Learning-rate schedules as tables: the lr of every epoch, computed up front.

Batched trials (``sweeps.batched``) share one optimizer per class, so a scheduler object per
trial cannot drive them. These pure functions repeat, operation for operation, the float
arithmetic of ``torch.optim.lr_scheduler`` (StepLR, ExponentialLR, CosineAnnealingLR,
OneCycleLR with ``cycle_momentum=False``) as ``sweeps.schedulers`` configures them, so a
batched trial sees bit-identical learning rates; ``tests/sweeps/test_lr_tables.py`` checks
that against torch for every schedule. ``plateau`` depends on the loss and has no table.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["TABULATED", "lr_table"]


def _constant(lr: float, epochs: int, o: dict[str, float]) -> list[float]:
    return [lr] * epochs


def _step(lr: float, epochs: int, o: dict[str, float]) -> list[float]:
    step_size, gamma = int(o.get("step_size", max(1, epochs // 4))), o.get("step_gamma", 0.5)
    out = [lr]
    for e in range(1, epochs):
        out.append(out[-1] * gamma if e % step_size == 0 else out[-1])
    return out


def _exponential(lr: float, epochs: int, o: dict[str, float]) -> list[float]:
    gamma = o.get("exp_gamma", 0.01 ** (1 / max(1, epochs)))
    out = [lr]
    for _ in range(1, epochs):
        out.append(out[-1] * gamma)
    return out


def _cosine(lr: float, epochs: int, o: dict[str, float]) -> list[float]:
    t_max, eta_min, base = max(1, epochs), 0.0, lr
    out = [lr]
    for e in range(1, epochs):
        prev = out[-1]
        if (e - 1 - t_max) % (2 * t_max) == 0:
            out.append(prev + (base - eta_min) * (1 - math.cos(math.pi / t_max)) / 2)
        else:
            out.append((1 + math.cos(math.pi * e / t_max))
                       / (1 + math.cos(math.pi * (e - 1) / t_max)) * (prev - eta_min) + eta_min)
    return out


def _onecycle(lr: float, epochs: int, o: dict[str, float]) -> list[float]:
    total = max(2, epochs)
    pct_start = o.get("pct_start", 0.3)
    max_lr = lr
    initial = max_lr / 25.0  # OneCycleLR's div_factor
    minimum = initial / 1e4  # and final_div_factor
    phases = [(float(pct_start * total) - 1, initial, max_lr), (total - 1, max_lr, minimum)]

    def at(step: int) -> float:
        start_step = 0.0
        for i, (end_step, start_lr, end_lr) in enumerate(phases):
            if step <= end_step or i == len(phases) - 1:
                pct = (step - start_step) / (end_step - start_step)
                return end_lr + (start_lr - end_lr) / 2.0 * (math.cos(math.pi * pct) + 1)
            start_step = end_step
        raise AssertionError("unreachable")

    return [at(e) for e in range(epochs)]


TABULATED: dict[str, Callable[[float, int, dict[str, float]], list[float]]] = {
    "none": _constant,
    "step": _step,
    "exponential": _exponential,
    "cosine": _cosine,
    "onecycle": _onecycle,
}


def lr_table(scheduler: str, lr: float, epochs: int, options: dict[str, float]) -> list[float]:
    """The learning rate used at each of ``epochs`` epochs (KeyError for ``plateau``)."""
    return TABULATED[scheduler](lr, epochs, options)
