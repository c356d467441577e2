"""The learning-rate range test: one short run with an exponentially increasing lr.

From the initial parameters, step ``i`` of ``steps`` uses
``lr_min * (lr_max / lr_min) ** (i / (steps - 1))``; the loss after each step is smoothed with
a bias-corrected exponential moving average. The test stops early when the smoothed loss
exceeds ``diverge_factor`` times its best value or anything becomes non-finite (it never
raises for a diverging loss).

A full-batch objective's step is a gradient step on ``loss(params)`` and the loss recorded is
``loss`` after it (smoothing 0.9). A mini-batch objective (``objectives.MiniBatchObjective``)
trains as one trial does: its own state from ``start_trial``, one step per batch of
``batches(0)``, ``batches(1)``, ... in their seeded order, in training mode; the loss recorded
for a step is the training loss of the next batch, measured before that batch's own step
(the batch has not been trained on yet). Batch losses are noisy, so they are smoothed as LR
finders smooth them (0.98, as fastai's ``lr_find``); the suggestions leave out the first
tenth of the steps, while that average settles. The suggestions (steepest, valley, edge) are
read off the smoothed curve where it has a real descent (``sweeps.diagnostics.range_curve``);
without one there is no suggestion: no lr the test tried made the loss fall
(``RangeTestResult.descends`` is False; ``drop`` and ``noise`` say by how much it missed).

``range_test_module`` works on any parameters + optimizer + loss closure and restores the
parameters, their gradients and the optimizer's state afterwards (as pytorch-lr-finder does);
``range_test`` builds them from an objective. Both return a ``RangeTestResult``, which
``sweeps.diagnostics.suggestion.combine`` turns into one lr and ``tracking.plots`` draws.

    result = range_test(build("rebalance"), "sgd")
    result.steepest, result.valley
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from sweeps.diagnostics.range_curve import (
    SMOOTHING,
    descent_size,
    edge,
    real_descent,
    smooth,
    steepest,
    valley,
)
from sweeps.optim.optimizers import OPTIMIZERS

if TYPE_CHECKING:
    import torch

    from objectives import MiniBatchObjective, Objective

__all__ = ["RangeTestResult", "batch_losses", "default_lr_bounds", "lr_schedule", "range_test",
           "range_test_module"]

log = logging.getLogger(__name__)

DEFAULT_STEPS = 200  # steps of the test
MINIBATCH_SMOOTHING = 0.98  # beta for the noisy loss of one mini-batch a step (fastai's)
MINIBATCH_WARMUP = 0.1  # share of a mini-batch test's steps its suggestions leave out
DIVERGE_FACTOR = 4.0  # stop once the smoothed loss exceeds this many times its best
SGD_BOUNDS = (1e-6, 1e8)  # default lr interval for plain gradient steps (sgd, momentum, ...)
ADAPTIVE_BOUNDS = (1e-6, 1e3)  # default lr interval for per-element normalised steps (adam, ...)


@dataclass(frozen=True)
class RangeTestResult:
    """The curve of a range test and the learning rates read off it."""

    lrs: np.ndarray  # lr of each step run
    losses: np.ndarray  # loss after each step (nan where it was not finite)
    smoothed: np.ndarray  # bias-corrected exponential moving average of ``losses``
    update_ratios: np.ndarray  # sum |delta theta| / sum |theta| of each step
    steepest: float | None  # lr of the steepest descent of the smoothed loss vs log lr
    valley: float | None  # lr in the middle of the main descent of the smoothed loss
    edge: float | None  # lr of the lowest smoothed loss, if the loss rose after it
    stopped_early: bool  # the loss diverged (or became non-finite) before the last step
    lr_min: float  # first lr of the planned schedule
    lr_max: float  # last lr of the planned schedule
    initial_loss: float  # loss of the initial parameters (of the first batch: mini-batch)
    beta: float = SMOOTHING  # the smoothing of ``smoothed``
    warmup: int = 0  # first steps left out when the suggestions were read
    minibatch: bool = False  # each step trained one mini-batch (else the full-batch loss)
    drop: float = math.nan  # how far the smoothed loss fell from the first step read to its low
    noise: float = math.nan  # the noise of the smoothed loss (see ``descent_size``)
    descends: bool = True  # the drop is a real descent (no suggestion is read off otherwise)

    @property
    def suggestions(self) -> dict[str, float]:
        """The suggestions that exist, by method name."""
        found = {"steepest": self.steepest, "valley": self.valley, "edge": self.edge}
        return {name: lr for name, lr in found.items() if lr is not None}

    def to_frame(self):  # type: ignore[no-untyped-def]
        """One row per step: lr, loss, smoothed loss, update ratio."""
        import pandas as pd

        return pd.DataFrame({"lr": self.lrs, "loss": self.losses, "smoothed": self.smoothed,
                             "update_ratio": self.update_ratios})


def default_lr_bounds(optimizer: str) -> tuple[float, float]:
    """The lr interval a range test of ``optimizer`` covers by default."""
    return SGD_BOUNDS if OPTIMIZERS[optimizer].torch_name == "SGD" else ADAPTIVE_BOUNDS


def lr_schedule(lr_min: float, lr_max: float, steps: int) -> np.ndarray:
    """``steps`` learning rates growing exponentially from ``lr_min`` to ``lr_max``."""
    if not (0 < lr_min < lr_max and math.isfinite(lr_max)):
        raise ValueError(f"need 0 < lr_min < lr_max < inf but got {lr_min!r}, {lr_max!r}.")
    if steps < 2:
        raise ValueError(f"steps must be at least 2 but got {steps!r}.")
    return np.asarray(lr_min * (lr_max / lr_min) ** (np.arange(steps) / (steps - 1)))


def range_test(
    objective: Objective,
    optimizer: str,
    *,
    lr_min: float | None = None,
    lr_max: float | None = None,
    steps: int = DEFAULT_STEPS,
    device: str | torch.device = "cpu",
    options: Mapping[str, float] | None = None,
    beta: float | None = None,
    diverge_factor: float = DIVERGE_FACTOR,
) -> RangeTestResult:
    """Range test of optimizer ``optimizer`` (a name in OPTIMIZERS) on fresh parameters.

    The bounds default to ``default_lr_bounds(optimizer)``; ``beta`` to ``SMOOTHING``, or
    ``MINIBATCH_SMOOTHING`` for a mini-batch objective, whose steps train one batch each and
    whose suggestions leave out the first ``MINIBATCH_WARMUP`` of the steps.
    """
    import torch

    from objectives import is_minibatch
    from sweeps.optim.optimizers import build_optimizer

    low, high = default_lr_bounds(optimizer)
    lr_min = low if lr_min is None else lr_min
    lr_max = high if lr_max is None else lr_max
    device = torch.device(device)
    initial = objective.init_params(device)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in initial.items()}
    opt = build_optimizer(optimizer, list(params.values()), lr_min, dict(options or {}))
    minibatch = is_minibatch(objective)
    loss_fn = (batch_losses(cast("MiniBatchObjective", objective), params, device) if minibatch
               else functools.partial(objective.loss, params))
    if beta is None:
        beta = MINIBATCH_SMOOTHING if minibatch else SMOOTHING
    warmup = int(steps * MINIBATCH_WARMUP) if minibatch else 0
    result = range_test_module(params, opt, loss_fn, lr_min=lr_min, lr_max=lr_max,
                               steps=steps, beta=beta, diverge_factor=diverge_factor,
                               warmup=warmup, noisy=minibatch)
    return replace(result, minibatch=minibatch)


def batch_losses(objective: MiniBatchObjective, params: dict[str, torch.Tensor],
                 device: torch.device) -> Callable[[], torch.Tensor]:
    """A loss closure for ``range_test_module`` that trains ``objective`` as a trial does.

    Each call is the training loss of the next batch (``batches(0)``, then ``batches(1)``,
    ...) under one fresh trial state from ``start_trial``, so the range test takes one
    optimizer step per batch.
    """
    state = objective.start_trial(device)
    stream = _batch_stream(objective, device)
    return lambda: objective.batch_loss(params, state, next(stream))


def _batch_stream(objective: MiniBatchObjective, device: torch.device
                  ) -> Iterator[torch.Tensor]:
    for epoch in itertools.count():
        batches = objective.batches(epoch, device)
        if not batches:
            raise ValueError(f"the objective has no batches in epoch {epoch}")
        yield from batches


def range_test_module(
    params: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[], torch.Tensor],
    *,
    lr_min: float,
    lr_max: float,
    steps: int = DEFAULT_STEPS,
    beta: float = SMOOTHING,
    diverge_factor: float = DIVERGE_FACTOR,
    warmup: int = 0,
    noisy: bool = False,
) -> RangeTestResult:
    """Range test of ``optimizer`` on ``params`` (the tensors it updates) and ``loss_fn``.

    ``loss_fn()`` computes the loss of the current values of ``params``. The parameters,
    their gradients and ``optimizer.state_dict()`` (state and hyperparameters, lr included)
    are restored afterwards, however the test ends. The suggestions are read off the smoothed
    curve after its first ``warmup`` steps, where it has a real descent (``noisy``: the loss
    is a batch's, and the descent must beat its noise too).
    """
    lrs = lr_schedule(lr_min, lr_max, steps)
    snapshot = _snapshot(params, optimizer)
    try:
        initial, losses, ratios = _run(list(params.values()), optimizer, loss_fn, lrs, beta,
                                       diverge_factor)
    finally:
        _restore(params, optimizer, snapshot)
    n = len(losses)
    smoothed = smooth(losses, beta)
    done = lrs[:n]
    read = done[warmup:], smoothed[warmup:]
    drop, noise = descent_size(losses, smoothed, beta, warmup)
    noise = noise if noisy else 0.0
    descends = n > warmup and real_descent(drop, noise, float(smoothed[warmup]))
    picks = ((steepest(*read), valley(*read), edge(*read)) if descends else (None, None, None))
    result = RangeTestResult(done, losses, smoothed, ratios, *picks, n < steps, lr_min, lr_max,
                             initial, beta, warmup, drop=drop, noise=noise, descends=descends)
    log.info("range test: %d of %d steps, suggestions %s", n, steps, result.suggestions)
    return result


def _run(
    leaves: list[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[], torch.Tensor],
    lrs: np.ndarray,
    beta: float,
    diverge_factor: float,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Step through ``lrs``; the loss recorded for a step is the loss after it."""
    import torch

    losses: list[float] = []
    ratios: list[float] = []
    avg, best = 0.0, math.inf
    loss = loss_fn()
    initial = float(loss.detach())
    if not math.isfinite(initial):
        return initial, np.empty(0), np.empty(0)
    for i, lr in enumerate(lrs):
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        optimizer.zero_grad()
        before = [p.detach().clone() for p in leaves]
        try:
            loss.backward()
            optimizer.step()
            loss = loss_fn()
        except RuntimeError as exc:  # e.g. a non-finite value the loss itself refuses
            log.info("range test stopped at lr %.3g: %s", lr, exc)
            break
        with torch.no_grad():
            moved = sum(float((p - b).abs().sum()) for p, b in zip(leaves, before))
            size = sum(float(b.abs().sum()) for b in before)
        value = float(loss.detach())
        losses.append(value if math.isfinite(value) else math.nan)
        ratios.append(moved / size if size > 0 else math.nan)
        avg = beta * avg + (1 - beta) * value
        smoothed = avg / (1 - beta ** (i + 1))
        if not math.isfinite(smoothed) or smoothed > diverge_factor * best:
            break
        best = min(best, smoothed)
    return initial, np.asarray(losses, dtype=float), np.asarray(ratios, dtype=float)


def _snapshot(params: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer
              ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    values = {k: p.detach().clone() for k, p in params.items()}
    grads = {k: None if p.grad is None else p.grad.detach().clone() for k, p in params.items()}
    return values, grads, copy.deepcopy(optimizer.state_dict())


def _restore(params: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer,
             snapshot: tuple[dict[str, Any], dict[str, Any], dict[str, Any]]) -> None:
    import torch

    values, grads, state = snapshot
    with torch.no_grad():
        for key, p in params.items():
            p.copy_(values[key])
            p.grad = grads[key]
    optimizer.load_state_dict(state)
