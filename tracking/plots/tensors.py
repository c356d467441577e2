"""The best trial's update ratio per parameter tensor (for objectives of several tensors):
which tensors of one run move and which do not."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from tracking.plots.curves import STALLED_BELOW, TARGET_RATIO, ratio_axes
from tracking.plots.figures import SIZE, figure, note, tab20
from tracking.plots.series import History, tensor_series

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["tensor_update_ratios"]

_TENSOR_STYLES = ("-", "--", ":", "-.")  # with 20 colours: 80 tensors told apart


def tensor_update_ratios(history: History, label: str = "", *,
                         stalled_below: float = STALLED_BELOW,
                         target: float = TARGET_RATIO) -> Figure:
    """Each parameter tensor's update ratio against epoch (log y), one line per tensor, the
    stalled band shaded and the target as a line: which tensors of one run (``label``, the
    best trial) move and which do not. A tensor whose median ratio is in the band is marked
    so in the legend."""
    curves = tensor_series(history, "update_ratio")
    columns = 1 + (len(curves) + 1) // 26  # legend columns: 26 entries fit the height
    fig, ax = figure(size=(SIZE[0] + 2.6 * (columns - 1), SIZE[1]))
    for i, (tensor, curve) in enumerate(curves.items()):
        finite = curve.values[np.isfinite(curve.values)]
        median = float(np.median(finite)) if len(finite) else math.nan
        mark = (" (does not move)" if median == 0 else
                " (stalled)" if median < stalled_below else "")
        ax.plot(curve.epochs, curve.values, color=tab20(i), lw=2.2 if mark else 1.4,
                ls=_TENSOR_STYLES[(i // 20) % len(_TENSOR_STYLES)], label=tensor + mark)
    if not curves:
        note(ax, "no per-tensor statistics (one tensor, or turned off)")
        return fig
    ratio_axes(ax, list(curves.values()), stalled_below, target)
    ax.set_title(f"Update ratio per parameter tensor{': ' + label if label else ''}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  frameon=False, ncol=columns)
    return fig
