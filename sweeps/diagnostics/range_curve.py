"""Reading a range test's curve: the smoothed loss against the learning rate (pure functions).

The loss after each step is smoothed with a bias-corrected exponential moving average
(``smooth``). Three learning rates are read off the smoothed curve:

- ``steepest``: the lr where the smoothed loss falls fastest against log lr;
- ``valley``: the middle of the main descent (see ``valley``);
- ``edge``: the lr of the lowest smoothed loss, beyond which it rises (for full-batch
  gradient steps: a little above the stability limit, 2 / largest curvature).

They are read only where the curve has a real descent (``real_descent``): the smoothed loss
falls, from the first step read to its lowest point, by more than ``DESCENT_FLOOR`` (1%) of
its starting value and, for a mini-batch test, by more than ``DESCENT_Z`` (3) times its own
noise (a full-batch loss has none). That noise is the spread of one step's loss (from the
median of the step-to-step changes, which a smooth trend hardly moves) times the share of it
the average lets through at the first step read (``descent_size``: 0.3 after the 10 steps left
out of a 100-step test, 0.1 in the long run at 0.98). A model whose inputs or first layer are
broken (the fault catalogue's) falls less than that noise; the healthy ones clear it by far.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DESCENT_FLOOR", "DESCENT_Z", "SMOOTHING", "VALLEY_SPAN", "descent_size", "edge",
           "real_descent", "smooth", "steepest", "valley"]

SMOOTHING = 0.9  # beta of the exponential moving average of a full-batch loss
VALLEY_SPAN = (0.1, 0.9)  # the descent runs from this fraction of the total drop to that one
DESCENT_Z = 3.0  # a real descent: the smoothed loss falls more than this many times its noise
DESCENT_FLOOR = 0.01  # ... and more than this fraction of its value at the first step read


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
