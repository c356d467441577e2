"""The study's trials as points: each trial's value against its learning rate (``loss_vs_lr``)
and against its number, with the best so far (``optimization_history``); one colour per
optimizer, the same in every plot (``optimizer_colors``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from tracking.plots.figures import figure, note
from tracking.plots.scales import spans_decades

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["loss_vs_lr", "optimization_history", "optimizer_colors"]

_STATES = ("COMPLETE", "PRUNED", "FAIL")  # finished trial states drawn by loss_vs_lr


def loss_vs_lr(frame: pd.DataFrame, order: Sequence[str] = (), metric: str = "loss") -> Figure:
    """Each trial's value of the study's ``metric`` against its learning rate (log x; log y
    where the values are positive and span decades), one colour per optimizer (``order``: see
    ``optimizer_colors``).

    ``frame`` has the columns optimizer, lr, value and state (``trials_frame``). Completed
    trials are filled circles, pruned ones hollow circles at the value where they stopped,
    failed ones crosses drawn above the highest value (they have none).
    """
    import pandas as pd
    from matplotlib.lines import Line2D

    fig, ax = figure()
    rows = frame[frame["state"].isin(_STATES)].copy()
    rows["lr"] = pd.to_numeric(rows["lr"], errors="coerce")
    rows["value"] = pd.to_numeric(rows["value"], errors="coerce")
    rows = rows[np.isfinite(rows["lr"]) & (rows["lr"] > 0)]
    values = rows["value"][np.isfinite(rows["value"])].to_numpy()
    log_y = spans_decades(values)
    failed_y = _beyond(values, log_y)
    colors = optimizer_colors(rows["optimizer"].dropna().unique(), order)
    handles: list[Line2D] = []
    for name, color in colors.items():
        mine = rows[rows["optimizer"] == name]
        done = mine[(mine["state"] == "COMPLETE") & np.isfinite(mine["value"])]
        pruned = mine[(mine["state"] == "PRUNED") & np.isfinite(mine["value"])]
        failed = mine[mine["state"] == "FAIL"]
        ax.scatter(done["lr"], done["value"], color=color, s=36, zorder=3, label=name)
        ax.scatter(pruned["lr"], pruned["value"], facecolors="none", edgecolors=color,
                   s=36, zorder=3, label=f"_{name} pruned")
        ax.scatter(failed["lr"], np.full(len(failed), failed_y), marker="x", color=color,
                   s=40, zorder=3, label=f"_{name} failed")
        handles.append(Line2D([], [], ls="", marker="o", color=color, label=name))
    states = set(rows["state"])
    if "PRUNED" in states:
        handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="none",
                              color="grey", label="pruned (value when stopped)"))
    if "FAIL" in states:
        handles.append(Line2D([], [], ls="", marker="x", color="grey",
                              label="failed (no value; drawn above the others)"))
    if rows.empty:
        note(ax, "no finished trial yet")
    else:
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final loss" if metric == "loss" else metric)
    ax.set_title(f"{'Final loss' if metric == 'loss' else metric} against learning rate")
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize="small", frameon=False)
    return fig


def optimization_history(study: optuna.Study, metric: str = "final loss") -> Figure:
    """Each completed trial's value (the study's ``metric``) against its number, with the
    best value so far."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    fig, ax = figure()
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values and math.isfinite(t.values[0])]
    pruned = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
              if t.intermediate_values]
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"{metric} (objective value)")
    ax.set_title(f"Optimization history of study {study.study_name!r}")
    if not complete:
        note(ax, "no completed trial yet")
        return fig
    numbers = np.array([t.number for t in complete], dtype=float)
    values = np.array([t.values[0] for t in complete], dtype=float)
    maximize = study.directions[0] == StudyDirection.MAXIMIZE
    best = np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
    ax.scatter(numbers, values, color="C0", s=30, zorder=3, label="completed trial")
    if pruned:
        last = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in pruned]
        last = [(n, v) for n, v in last if math.isfinite(v)]
        ax.scatter([n for n, _ in last], [v for _, v in last], facecolors="none",
                   edgecolors="grey", s=30, zorder=2, label="pruned (last reported value)")
    ax.step(numbers, best, where="post", color="C3", lw=1.8, label="best so far")
    if all(y > 0 for y in _offsets_y(ax)) and spans_decades(values):
        ax.set_yscale("log")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    return fig


def optimizer_colors(names: Iterable[str], order: Sequence[str] = ()) -> dict[str, str]:
    """A colour per optimizer: the ``i``-th name of ``order`` always gets colour ``i``, so
    with the same ``order`` (the tool's list of optimizers) every plot and study agree;
    names not in it follow, sorted."""
    known = list(order)
    wanted = set(names)
    ordered = [n for n in known if n in wanted] + sorted(wanted - set(known))
    slot = {n: i for i, n in enumerate(known)}
    extra = iter(range(len(known), len(known) + len(ordered)))
    return {n: f"C{(slot[n] if n in slot else next(extra)) % 10}" for n in ordered}


def _beyond(values: np.ndarray, log: bool) -> float:
    """A y beyond the largest of ``values`` (where the failed trials are drawn)."""
    if not len(values):
        return 1.0
    high, low = float(values.max()), float(values.min())
    return high * 3 if log else high + 0.1 * max(high - low, abs(high), 1e-12)


def _offsets_y(ax: Axes) -> list[float]:
    return [float(y) for c in ax.collections for y in np.asarray(c.get_offsets())[:, 1]]
