"""Curves of the top trials against the epoch: the study's metric (``loss_curves``) and the
update ratio (``update_ratio_curves``), with the stalled band and the target ratio of the
verdicts' thresholds; a reference run (the seed's) dashed black on top."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from sweeps.training.verdicts import Thresholds
from tracking.plots.figures import figure, legend_outside, note, sci
from tracking.plots.scales import spans_decades
from tracking.plots.series import Curve, History, series

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["STALLED_BELOW", "TARGET_RATIO", "loss_curves", "ratio_axes", "update_ratio_curves"]

STALLED_BELOW = Thresholds.stalled_ratio  # update ratios below this barely move the parameters
TARGET_RATIO = Thresholds.target_ratio  # a healthy update ratio, the usual rule of thumb


def loss_curves(curves: Mapping[str, History],
                reference: Mapping[str, History] | None = None, metric: str = "loss") -> Figure:
    """The study's ``metric`` (the training loss by default) against epoch for each
    labelled trial, log y where every value is positive; ``reference`` dashed black."""
    fig, ax = figure()
    drawn = _draw_curves(ax, curves, reference, metric)
    values = np.concatenate([c.values for c in drawn]) if drawn else np.empty(0)
    if len(values) and spans_decades(values[np.isfinite(values)]):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    title = "Training loss" if metric == "loss" else metric
    ax.set_title(f"{title} of the top trials")
    legend_outside(ax)
    return fig


def update_ratio_curves(curves: Mapping[str, History],
                        reference: Mapping[str, History] | None = None, *,
                        stalled_below: float = STALLED_BELOW,
                        target: float = TARGET_RATIO) -> Figure:
    """Update ratio against epoch (log y), the stalled band shaded, the target as a line."""
    fig, ax = figure()
    data = _draw_curves(ax, curves, reference, "update_ratio")
    ratio_axes(ax, data, stalled_below, target)
    ax.set_title("Update ratio of the top trials")
    legend_outside(ax)
    return fig


def ratio_axes(ax: Axes, drawn: Sequence[Curve], stalled_below: float, target: float) -> None:
    """Log y, the stalled band shaded below ``stalled_below``, the target as a dotted line,
    and limits that show them and every positive finite value drawn."""
    ax.set_yscale("log")
    values = np.concatenate([c.values for c in drawn]) if drawn else np.empty(0)
    values = values[np.isfinite(values) & (values > 0)]
    low = min(float(values.min()) if len(values) else stalled_below, stalled_below) / 10
    high = max(float(values.max()) if len(values) else target, target) * 10
    ax.axhspan(low, stalled_below, color="tab:red", alpha=0.12, lw=0,
               label=f"stalled (< {sci(stalled_below, 1)})")
    ax.axhline(target, color="dimgrey", ls=":", lw=1.5, label=f"target (~{sci(target, 1)})")
    ax.set_ylim(low, high)
    ax.set_xlabel("epoch")
    ax.set_ylabel("update ratio (|Δθ| / |θ| per step)")


def _draw_curves(ax: Axes, curves: Mapping[str, History],
                 reference: Mapping[str, History] | None, metric: str) -> list[Curve]:
    """One line per curve (colour cycle), then the reference ones dashed black on top."""
    drawn = []
    for i, (label, history) in enumerate(curves.items()):
        curve = series(history, metric)
        ax.plot(curve.epochs, curve.values, color=f"C{i % 10}", lw=1.4, label=label)
        drawn.append(curve)
    for label, history in (reference or {}).items():
        curve = series(history, metric)
        ax.plot(curve.epochs, curve.values, color="black", ls="--", lw=1.6, zorder=4,
                label=label)
        drawn.append(curve)
    if not drawn:
        note(ax, "no trial to draw")
    return drawn
