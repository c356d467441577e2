"""The parallel-coordinates plot: where each trial crosses each axis (log lr, categories, the
metric on a log axis where it spans decades), failed trials apart above the value axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tracking.plots.parallel import _FAILED_AT, parallel_coordinates

FRAME = pd.DataFrame({
    "trial": [0, 1, 2, 3],
    "state": ["COMPLETE", "PRUNED", "FAIL", "COMPLETE"],
    "optimizer": ["sgd", "adam", "sgd", "adam"],
    "lr": [1e-4, 1e-2, 1e6, 1.0],
    "scheduler": ["none", "cosine", "none", "step"],
    "value": [1e-3, 0.5, np.nan, 10.0],
})


def lines(maximize: bool = False) -> list[tuple[list[float], str, object]]:
    ax = parallel_coordinates(FRAME, ["sgd", "adam"], ["none", "step", "cosine"],
                              maximize=maximize).axes[0]
    return [(list(line.get_ydata()), line.get_linestyle(), line.get_color())
            for line in ax.get_lines() if len(line.get_xdata()) == 4]


def test_each_trial_crosses_the_axes_where_its_values_are() -> None:
    drawn = lines()
    assert len(drawn) == 4
    by_lr = {round(ys[1], 6): (ys, style) for ys, style, _ in drawn}
    # lr from 1e-4 to 1e6: ten decades on a log axis, 1e-2 at 0.2, 1 at 0.4
    assert sorted(by_lr) == pytest.approx([0.0, 0.2, 0.4, 1.0])
    sgd_none, style = by_lr[0.0]
    assert sgd_none == pytest.approx([0.0, 0.0, 0.0, 0.0]) and style == "-"  # the best: 1e-3
    adam_cosine, style = by_lr[0.2]
    assert adam_cosine[0] == 1.0 and adam_cosine[2] == 1.0 and style == "--"  # pruned
    # values 1e-3 .. 10 on a log axis: 0.5 at log10(500) / 4
    assert adam_cosine[3] == pytest.approx(np.log10(500) / 4)
    failed, _ = by_lr[1.0]
    assert failed[3] == _FAILED_AT  # apart, above the value axis


def test_the_best_trial_is_yellow_and_drawn_last_either_way() -> None:
    for maximize, best in ((False, 0.0), (True, 1.0)):
        ys, _, color = [d for d in lines(maximize) if d[0][3] != _FAILED_AT][-1]
        assert ys[3] == pytest.approx(best)
        assert np.allclose(color[:3], (0.993248, 0.906157, 0.143936))  # viridis's yellow


def test_no_trial_yet_says_so() -> None:
    fig = parallel_coordinates(FRAME.iloc[0:0])
    assert [t.get_text() for t in fig.axes[0].texts] == ["no finished trial yet"]
