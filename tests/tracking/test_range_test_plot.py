"""The LR range test's plot: log axes, the raw and the smoothed loss, one line per suggestion,
and for a mini-batch test the unread start shaded; drawn from a real range test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sweeps.diagnostics.range_test import range_test
from tests.minibatch_objectives import tiny
from tests.toy_objectives import Quadratic
from tracking.plots.range_test import plot_range_test


def test_plot_writes_a_png_with_labelled_log_axes(tmp_path: Path) -> None:
    result = range_test(Quadratic(), "sgd", lr_min=1e-4, lr_max=1e6, steps=100)
    path = tmp_path / "range.png"

    fig = plot_range_test(result, path)

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    assert ax.get_xlabel() == "learning rate" and ax.get_ylabel() == "loss (smoothed)"
    assert ax.get_xscale() == "log"
    assert "range test" in ax.get_title()
    assert len(ax.lines) == 2 + len(result.suggestions)  # raw, smoothed, one per suggestion
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["loss", "loss (smoothed)"]
    assert [label.split(":")[0] for label in labels[2:]] == list(result.suggestions)


def test_minibatch_plot_shows_the_raw_and_smoothed_loss_and_shades_the_unread_start(
        tmp_path: Path) -> None:
    result = range_test(tiny(), "adam", steps=60)
    ax = plot_range_test(result, tmp_path / "range.png").axes[0]

    raw, smoothed = ax.lines[:2]
    np.testing.assert_array_equal(raw.get_ydata(), result.losses)
    np.testing.assert_array_equal(smoothed.get_ydata(), result.smoothed)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["loss", "loss (smoothed)", "not read (the average settles)"]
    assert len(ax.patches) == 1
