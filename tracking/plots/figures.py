"""What every plot family shares: a figure built without ``pyplot`` (no global figure state, no
GUI backend), saving it, a note in place of data, a legend outside the axes, short numbers."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["DPI", "SIZE", "figure", "legend_outside", "note", "save", "save_all", "sci",
           "tab20"]

SIZE = (9.0, 5.0)  # figure size in inches
DPI = 120


def figure(size: tuple[float, float] = SIZE) -> tuple[Figure, Axes]:
    """A new figure with one axes, laid out to fit its legend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (or the format the suffix names) and return the path."""
    target = Path(path)
    fig.savefig(target, dpi=DPI)
    return target


def save_all(figures: Sequence[tuple[Figure, Path]]) -> list[Path]:
    """``save`` each figure at its path, two at a time where this process can fork: the
    figures are independent and rendering them is most of their cost, so a forked copy of
    this process renders every second one on another core. Only a process with one thread
    forks (a lock another thread holds would stay held in the copy); whatever the copy did
    not write is written here."""
    if len(figures) < 2 or not hasattr(os, "fork") or threading.active_count() > 1:
        return [save(fig, path) for fig, path in figures]
    theirs = figures[1::2]
    pid = os.fork()
    if pid == 0:  # the copy: write its figures, then leave without any cleanup
        code = 1
        try:
            for fig, path in theirs:
                save(fig, path)
            code = 0
        finally:
            os._exit(code)
    for fig, path in figures[0::2]:
        save(fig, path)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        for fig, path in theirs:
            save(fig, path)
    return [Path(path) for _, path in figures]


def note(ax: Axes, text: str) -> None:
    """``text`` in the middle of empty axes: why there is nothing to draw."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", wrap=True,
            color="dimgrey")
    ax.set_xticks([])
    ax.set_yticks([])


def legend_outside(ax: Axes) -> None:
    """The legend to the right of the axes, where there is anything to name."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  frameon=False)


def tab20(i: int) -> tuple[float, ...]:
    """Colour ``i`` of the 20 of matplotlib's ``tab20``."""
    from matplotlib import colormaps

    return tuple(colormaps["tab20"](i % 20))


def sci(x: float, digits: int = 2) -> str:
    """``3.2e-3``, ``0.27``, ``20``: ``digits`` significant digits, short exponents."""
    if x == 0 or not math.isfinite(x) or 1e-2 <= abs(x) < 1e3:
        return f"{x:.{digits}g}"
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"
