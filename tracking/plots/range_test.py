"""The LR range test's curve: the smoothed loss against the learning rate (log scale), the raw
loss faint, the suggestions as vertical lines, the start the suggestions leave out shaded.

It reads the test through ``RangeCurve``, the fields it draws, which
``sweeps.diagnostics.range_test.RangeTestResult`` has; the commands hand the result over
(``tracking`` does not import the diagnostics).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["RangeCurve", "plot_range_test"]


class RangeCurve(Protocol):
    """What the plot reads of a range test (``RangeTestResult``)."""

    @property
    def lrs(self) -> np.ndarray: ...  # lr of each step run

    @property
    def losses(self) -> np.ndarray: ...  # loss after each step

    @property
    def smoothed(self) -> np.ndarray: ...  # the losses' moving average

    @property
    def warmup(self) -> int: ...  # first steps the suggestions leave out

    @property
    def stopped_early(self) -> bool: ...  # the loss diverged before the last step

    @property
    def minibatch(self) -> bool: ...  # each step's loss is one batch's

    @property
    def descends(self) -> bool: ...  # a real descent: the suggestions were read

    @property
    def suggestions(self) -> Mapping[str, float]: ...  # lr by method name


def plot_range_test(result: RangeCurve, path: str | Path | None = None,
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
