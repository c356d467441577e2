"""The Pareto front of a study of several metrics: each complete trial at its values of the
first two metrics, the front's trials joined and labelled with their numbers, the trials it
dominates in grey, and trials that broke a constraint apart (red crosses)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tracking.plots.figures import figure, legend_outside, note
from tracking.plots.scales import spans_decades

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["pareto_front"]


def pareto_front(frame: pd.DataFrame, names: Sequence[str], directions: Sequence[str]
                 ) -> Figure:
    """``frame``: the study's trials (``sweeps.study.results.trials_frame``: ``value`` holds
    the first metric, a column each the later ones, ``pareto`` and perhaps ``feasible``);
    ``names`` and ``directions``: the study's metrics, two or more (the first two drawn)."""
    import pandas as pd

    fig, ax = figure()
    x_name, y_name = names[0], names[1]
    rows = frame[frame["state"] == "COMPLETE"]
    x = pd.to_numeric(rows["value"], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(rows[y_name], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(x) & np.isfinite(y)
    on_front = (rows["pareto"] == True).to_numpy() & finite  # noqa: E712
    infeasible = ((rows["feasible"] == False).to_numpy() if "feasible" in rows  # noqa: E712
                  else np.zeros(len(rows), dtype=bool)) & finite
    rest = finite & ~on_front & ~infeasible
    ax.set_xlabel(f"{x_name} ({directions[0]})")
    ax.set_ylabel(f"{y_name} ({directions[1]})")
    shown = " and ".join(names[:2])
    more = f" (front over all {len(names)} metrics)" if len(names) > 2 else ""
    ax.set_title(f"Pareto front: {shown}{more}")
    if not on_front.any():
        note(ax, "no complete, feasible trial yet")
        return fig
    ax.scatter(x[rest], y[rest], color="lightgrey", edgecolors="grey", s=30, zorder=2,
               label="dominated trial")
    if infeasible.any():
        ax.scatter(x[infeasible], y[infeasible], color="C3", marker="x", s=40, zorder=2,
                   label="broke a constraint")
    order = np.argsort(x[on_front], kind="stable")
    fx, fy = x[on_front][order], y[on_front][order]
    ax.plot(fx, fy, color="C0", lw=1.2, zorder=3, drawstyle="steps-post"
            if len(names) == 2 else "default")
    ax.scatter(fx, fy, color="C0", s=45, zorder=4, label="Pareto front")
    for number, px, py in zip(rows["trial"].to_numpy()[on_front][order], fx, fy):
        ax.annotate(str(number), (px, py), textcoords="offset points", xytext=(4, 4),
                    fontsize="small", color="C0")
    if (x[finite] > 0).all() and spans_decades(x[finite]):
        ax.set_xscale("log")
    if (y[finite] > 0).all() and spans_decades(y[finite]):
        ax.set_yscale("log")
    legend_outside(ax)
    return fig
