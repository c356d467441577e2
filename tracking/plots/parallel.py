"""Parallel coordinates of a sweep that people can read: learning rates on a log axis.

MLflow's own parallel-coordinates view draws every axis linearly, so with learning rates over
six decades every trial but the largest sits at the bottom of the lr axis, and a diverged
trial's value (the largest double) flattens the value axis. Here each trial is a line across
four axes: optimizer and scheduler (categories, in the sweep's order), learning rate (log
scale) and the study's metric (log scale where it spans decades). Lines are coloured by the
metric (the best in yellow, drawn last, on top); pruned trials are dashed at the value where
they stopped; failed trials (no value) are drawn in red above the value axis's top, apart
from the rest. The searched sub-parameters (momentum, decay factors) are left out: each
belongs to some optimizers or schedulers only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tracking.plots.scales import spans_decades

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["parallel_coordinates"]

_FAILED_AT = 1.08  # where failed trials cross the value axis (its range is 0..1)


def parallel_coordinates(frame: pd.DataFrame, optimizers: Sequence[str] = (),
                         schedulers: Sequence[str] = (), metric: str = "loss",
                         maximize: bool = False) -> Figure:
    """The trials of ``frame`` (``sweeps.study.results.trials_frame``: optimizer, lr,
    scheduler, value, state) as lines across the four axes; ``optimizers`` and
    ``schedulers`` order the categories (others follow, sorted)."""
    import pandas as pd
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    rows = frame[frame["state"].isin(("COMPLETE", "PRUNED", "FAIL"))].copy()
    rows["lr"] = pd.to_numeric(rows["lr"], errors="coerce")
    rows["value"] = pd.to_numeric(rows["value"], errors="coerce")
    rows = rows[np.isfinite(rows["lr"]) & (rows["lr"] > 0)]
    fig = Figure(figsize=(9.0, 5.0), layout="constrained")  # no pyplot: no global state
    ax = fig.subplots()
    label = "final loss" if metric == "loss" else metric
    ax.set_title(f"Trials across the search space, coloured by {label}")
    if rows.empty:
        ax.text(0.5, 0.5, "no finished trial yet", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    opt_names = _ordered(rows["optimizer"], optimizers)
    sched_names = _ordered(rows["scheduler"], schedulers)
    lr_axis = _LogAxis(rows["lr"].to_numpy())
    good = rows["value"][np.isfinite(rows["value"])].to_numpy()
    value_axis = _LogAxis(good) if spans_decades(good) else _LinearAxis(good)
    cmap = colormaps["viridis_r"]  # 0: the best, yellow
    worst_first = rows.sort_values("value", ascending=maximize, na_position="first")
    for _, row in worst_first.iterrows():
        ys = [_category(row["optimizer"], opt_names), lr_axis.at(row["lr"]),
              _category(row["scheduler"], sched_names)]
        if row["state"] == "FAIL" or not math.isfinite(row["value"]):
            ax.plot(range(4), [*ys, _FAILED_AT], color="tab:red", lw=1.0, alpha=0.7)
            continue
        at = value_axis.at(row["value"])
        ax.plot(range(4), [*ys, at], color=cmap(1 - at if maximize else at),
                lw=1.6 if row["state"] == "COMPLETE" else 1.0,
                ls="-" if row["state"] == "COMPLETE" else "--", alpha=0.9)
    _axes(ax, [("optimizer", _category_ticks(opt_names)), ("learning rate", lr_axis.ticks()),
               ("scheduler", _category_ticks(sched_names)), (label, value_axis.ticks())])
    ax.text(3.02, _FAILED_AT, "failed", color="tab:red", va="center", fontsize="small")
    ax.text(0.0, -0.16, "solid: complete; dashed: pruned, at its last value", fontsize="small",
            transform=ax.transData, color="grey")
    return fig


class _LogAxis:
    """Values placed on 0..1 by their logarithm (at least one decade shown)."""

    def __init__(self, values: np.ndarray) -> None:
        logs = np.log10(values[values > 0]) if len(values) else np.zeros(1)
        self.low, self.high = float(np.min(logs)), float(np.max(logs))
        if self.high - self.low < 1:
            middle = (self.high + self.low) / 2
            self.low, self.high = middle - 0.5, middle + 0.5

    def at(self, value: float) -> float:
        return (math.log10(value) - self.low) / (self.high - self.low) if value > 0 else 0.0

    def ticks(self) -> list[tuple[float, str]]:
        decades = range(math.ceil(self.low), math.floor(self.high) + 1)
        return [((d - self.low) / (self.high - self.low), f"1e{d}") for d in decades]


class _LinearAxis:
    """Values placed on 0..1 linearly, with five ticks."""

    def __init__(self, values: np.ndarray) -> None:
        self.low = float(np.min(values)) if len(values) else 0.0
        self.high = float(np.max(values)) if len(values) else 1.0
        if self.high <= self.low:
            self.low, self.high = self.low - 0.5, self.high + 0.5

    def at(self, value: float) -> float:
        return (value - self.low) / (self.high - self.low)

    def ticks(self) -> list[tuple[float, str]]:
        return [(t, f"{self.low + t * (self.high - self.low):.3g}")
                for t in np.linspace(0, 1, 5)]


def _ordered(column: pd.Series, order: Sequence[str]) -> list[str]:
    present = set(column.dropna())
    return [n for n in order if n in present] + sorted(present - set(order))


def _category(name: str, names: list[str]) -> float:
    return names.index(name) / max(1, len(names) - 1) if len(names) > 1 else 0.5


def _category_ticks(names: list[str]) -> list[tuple[float, str]]:
    return [(_category(n, names), n) for n in names]


def _axes(ax: Axes, axes: list[tuple[str, list[tuple[float, str]]]]) -> None:
    """Vertical axes at x = 0, 1, ..., each with its name and tick labels."""
    for x, (name, ticks) in enumerate(axes):
        ax.axvline(x, color="black", lw=0.8)
        ax.text(x, 1.16, name, ha="center", va="bottom", fontweight="bold")
        for y, text in ticks:
            ax.text(x - 0.03, y, text, ha="right", va="center", fontsize="small")
    ax.set_xlim(-0.45, 3.35)
    ax.set_ylim(-0.2, 1.22)
    ax.set_axis_off()
