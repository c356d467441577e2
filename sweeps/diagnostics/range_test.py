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
tenth of the steps, while that average settles. Three learning rates are read off the
smoothed curve:

- ``steepest``: the lr where the smoothed loss falls fastest against log lr;
- ``valley``: the middle of the main descent (see ``valley``);
- ``edge``: the lr of the lowest smoothed loss, beyond which it rises (for full-batch
  gradient steps: a little above the stability limit, 2 / largest curvature).

They are read only where the curve has a real descent: the smoothed loss falls, from the first
step read to its lowest point, by more than ``DESCENT_FLOOR`` (1%) of its starting value and,
for a mini-batch test, by more than ``DESCENT_Z`` (3) times its own noise (a full-batch loss
has none). That noise is the spread of one step's loss (from the median of the step-to-step
changes, which a smooth trend hardly moves) times the share of it the average lets through
at the first step read (``descent_size``: 0.3 after the 10 steps left out of a 100-step
test, 0.1 in the long run at 0.98). Without a real descent there is no suggestion: no lr
the test tried made the loss fall (``RangeTestResult.descends`` is False; ``drop`` and
``noise`` say by how much it missed). Measured: the inputs scaled by 1e-6 or the first
layer's ReLUs dead fall 0.3-1.0 noise (0.1-0.4% of the loss) at 60-200 steps; ``digits``,
``digits-cnn`` and the catalogue's healthy models 17-95 at the default 200 steps, 3.1-35 at
60-100.

``range_test_module`` works on any parameters + optimizer + loss closure and restores the
parameters, their gradients and the optimizer's state afterwards (as pytorch-lr-finder does);
``range_test`` builds them from an objective. Both return a ``RangeTestResult``.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from sweeps.optim.optimizers import OPTIMIZERS

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

    from objectives import MiniBatchObjective, Objective

__all__ = [
    "LrSuggestion",
    "RangeTestResult",
    "batch_losses",
    "combine",
    "default_lr_bounds",
    "descent_size",
    "edge",
    "lr_schedule",
    "plot_range_test",
    "range_test",
    "range_test_module",
    "real_descent",
    "smooth",
    "steepest",
    "valley",
]

log = logging.getLogger(__name__)

DEFAULT_STEPS = 200  # steps of the test
SMOOTHING = 0.9  # beta of the exponential moving average of a full-batch loss
MINIBATCH_SMOOTHING = 0.98  # beta for the noisy loss of one mini-batch a step (fastai's)
MINIBATCH_WARMUP = 0.1  # share of a mini-batch test's steps its suggestions leave out
DIVERGE_FACTOR = 4.0  # stop once the smoothed loss exceeds this many times its best
SGD_BOUNDS = (1e-6, 1e8)  # default lr interval for plain gradient steps (sgd, momentum, ...)
ADAPTIVE_BOUNDS = (1e-6, 1e3)  # default lr interval for per-element normalised steps (adam, ...)
VALLEY_SPAN = (0.1, 0.9)  # the descent runs from this fraction of the total drop to that one
DESCENT_Z = 3.0  # a real descent: the smoothed loss falls more than this many times its noise
DESCENT_FLOOR = 0.01  # ... and more than this fraction of its value at the first step read


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


# -- reading the curve (pure functions) -----------------------------------------------------

def smooth(losses: np.ndarray, beta: float = SMOOTHING) -> np.ndarray:
    """Bias-corrected exponential moving average (non-finite values propagate)."""
    out = np.empty(len(losses))
    avg = 0.0
    for i, value in enumerate(losses):
        avg = beta * avg + (1 - beta) * float(value)
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def descent_size(losses: np.ndarray, smoothed: np.ndarray, beta: float, start: int = 0
                 ) -> tuple[float, float]:
    """(drop, noise) of a range test's curve read from step ``start``: how far the smoothed
    loss falls from its value there to its lowest (over the finite steps), and the noise of
    the smoothed loss there. That is the spread of one step's loss (1.4826 * median
    |step-to-step change| / sqrt 2, a robust standard deviation that a smooth trend hardly
    moves) times the share of it that the bias-corrected average of ``start + 1`` steps lets
    through: (1 - beta) sqrt((1 - beta^2n) / (1 - beta^2)) / (1 - beta^n), which falls to
    sqrt((1 - beta) / (1 + beta)) (0.1 at 0.98) as n grows."""
    finite = np.isfinite(smoothed) & np.isfinite(losses)
    n = int(np.argmin(finite)) if not finite.all() else len(smoothed)
    if n < start + 2:
        return 0.0, math.inf
    spread = 1.4826 * float(np.median(np.abs(np.diff(losses[start:n])))) / math.sqrt(2)
    steps = start + 1
    share = ((1 - beta) * math.sqrt((1 - beta ** (2 * steps)) / (1 - beta**2))
             / (1 - beta**steps))
    return float(smoothed[start] - np.min(smoothed[start:n])), spread * share


def real_descent(drop: float, noise: float, start: float) -> bool:
    """A fall of the smoothed loss by ``drop`` is real: above ``DESCENT_Z`` times ``noise``
    (0 for an exact, full-batch loss) and ``DESCENT_FLOOR`` of ``|start|``."""
    return drop > max(DESCENT_Z * noise, DESCENT_FLOOR * abs(start))


def _descent(lrs: np.ndarray, smoothed: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The finite curve up to the minimum of the smoothed loss, if the loss fell at all."""
    finite = np.isfinite(smoothed)
    n = int(np.argmin(finite)) if not finite.all() else len(smoothed)
    if n < 3:
        return None
    lowest = int(np.argmin(smoothed[:n]))
    if smoothed[lowest] >= smoothed[0]:
        return None
    return lrs[: lowest + 1], smoothed[: lowest + 1]


def steepest(lrs: np.ndarray, smoothed: np.ndarray) -> float | None:
    """The lr where the smoothed loss falls fastest against log10(lr), up to its minimum."""
    descent = _descent(lrs, smoothed)
    if descent is None or len(descent[0]) < 2:
        return None
    x, y = np.log10(descent[0]), descent[1]
    slope = np.gradient(y, x)
    i = int(np.argmin(slope))
    return float(descent[0][i]) if slope[i] < 0 else None


def valley(lrs: np.ndarray, smoothed: np.ndarray, span: tuple[float, float] = VALLEY_SPAN
           ) -> float | None:
    """The lr in the middle (on the log scale) of the main descent of the smoothed loss.

    The descent is the stretch of steps from where the smoothed loss has fallen by
    ``span[0]`` of its total drop (first loss to the minimum) to where it has fallen by
    ``span[1]``. fastai's ``valley`` takes the point halfway along the longest descending
    stretch of the curve; with a full-batch loss the curve descends (imperceptibly) from the
    very first step, so the stretch is defined here by how much of the drop it carries.
    """
    descent = _descent(lrs, smoothed)
    if descent is None:
        return None
    x, y = descent
    drop = y[0] - y[-1]
    start = int(np.argmax(y <= y[0] - span[0] * drop))
    end = int(np.argmax(y <= y[0] - span[1] * drop))
    return float(x[(start + end) // 2])


def edge(lrs: np.ndarray, smoothed: np.ndarray) -> float | None:
    """The lr of the lowest smoothed loss, or None if the loss was still falling at the end.

    A non-finite loss after the lowest point counts as rising.

    Past it the loss rises: for full-batch gradient steps the lr has crossed the stability
    limit (2 / the largest curvature) shortly before (the moving average lags the raw loss by
    a few steps), and the best constant lr of a long run lies below it.
    """
    descent = _descent(lrs, smoothed)
    if descent is None or len(descent[0]) == len(smoothed):  # nothing after the lowest point
        return None
    return float(descent[0][-1])


@dataclass(frozen=True)
class LrSuggestion:
    """One learning rate to try and the interval the methods span."""

    lr: float  # the combined suggestion
    low: float  # smallest lr any method suggested
    high: float  # largest lr any method suggested
    basis: str  # how ``lr`` was obtained


def combine(result: RangeTestResult | None, ratio_lr: float | None) -> LrSuggestion | None:
    """Combine the range test's suggestions and the update-ratio rule into one.

    The lr is the geometric middle of ``valley`` (the loss falls fast) and ``edge`` (the
    loss stops falling): for full-batch steps the best lr of a long run lies close below the
    edge, while the short test's ``steepest`` and ``valley`` sit at the low end of the good
    band. Without an edge, the geometric mean of the range test's suggestions; without any,
    the ratio rule. ``low``/``high`` span every suggestion, the ratio rule included. None
    where the range test ran and its loss had no real descent at any lr (``descends``): then
    no lr made the loss fall, and a number would be a guess.

    Measured on the seed case (``rebalance``, SGD): valley 2.1e5 and edge 3.9e6 give 9.1e5;
    a 30-trial sweep of SGD over 10,000 epochs found its best lr at 2.0e6. ``steepest``
    (2.5e5) and ``valley`` alone sit just inside one decade below it, and the ratio rule
    (2.1e3) three decades below: it says where the parameters start to move, not how fast
    they can go.

    A mini-batch test's lr is its ``valley`` (fastai's default suggestion): the noise of the
    batches makes a long run unstable well below the edge. Measured on ``digits`` (40 epochs
    at a constant lr): Adam's valley 0.015 and edge 0.16 (their middle 0.048); the best final
    validation loss came at 0.003-0.01, at 0.03 it was ten times worse. SGD's valley 0.59,
    edge 3.0; best at 1, diverged at 3.2.
    """
    if result is not None and not result.descends:
        return None
    found = dict(result.suggestions) if result is not None else {}
    every = [*found.values(), *([ratio_lr] if ratio_lr and math.isfinite(ratio_lr) else [])]
    if not every:
        return None
    if result is not None and result.minibatch and "valley" in found:
        lr, basis = found["valley"], "valley of the smoothed loss"
    elif "valley" in found and "edge" in found:
        lr, basis = _geomean([found["valley"], found["edge"]]), "middle of valley and edge"
    elif found:
        lr, basis = _geomean(list(found.values())), f"mean of {' and '.join(found)}"
    else:
        lr, basis = every[0], "update-ratio rule"
    return LrSuggestion(lr, min(every), max(every), basis)


def _geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


# -- running the test -----------------------------------------------------------------------

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


# -- plotting -------------------------------------------------------------------------------

def plot_range_test(result: RangeTestResult, path: str | Path | None = None,
                    *, title: str | None = None) -> Figure:
    """The smoothed loss against the lr (log scale), raw loss faint, suggestions as lines;
    the start the suggestions leave out (``warmup``) shaded.

    Written as a PNG to ``path`` when given; returns the figure (not attached to pyplot).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, color="tab:blue", alpha=0.25, label="loss")
    ax.plot(result.lrs, result.smoothed, color="tab:blue", label="loss (smoothed)")
    if 0 < result.warmup < len(result.lrs):
        ax.axvspan(result.lrs[0], result.lrs[result.warmup], color="0.9",
                   label="not read (the average settles)")
    colors = {"steepest": "tab:red", "valley": "tab:green", "edge": "tab:gray"}
    for name, lr in result.suggestions.items():
        ax.axvline(lr, color=colors.get(name, "gray"), linestyle="--",
                   label=f"{name}: {lr:.2g}")
    ax.set_xscale("log")
    if len(result.losses) and np.nanmin(result.losses) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    stop = ", stopped early (diverging)" if result.stopped_early else ""
    kind = " of one batch" if result.minibatch else ""
    flat = "" if result.descends else " (no real descent: no suggestion)"
    ax.set_title((title or f"LR range test: {len(result.lrs)} steps{kind}{stop}") + flat)
    ax.legend(loc="best")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
