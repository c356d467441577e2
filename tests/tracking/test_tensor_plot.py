"""The best trial's update ratio per parameter tensor: one line per tensor on log y against the
stalled band of the verdicts' thresholds, stalled tensors marked; ``write_sweep_plots`` adds
it as a sixth file only for a history with per-tensor metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from objectives import build
from sweeps.study.results import trials_frame
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from sweeps.training.stats import EpochStats
from sweeps.training.verdicts import Thresholds
from tests.sweeps.training.tensor_objectives import grad_scaled
from tracking import plots

EPOCHS = 30
LABEL = "#3 sgd lr=0.5"


@pytest.fixture(scope="module")
def history() -> EpochStats:
    """Four tensors; ``first.weight`` stalls (its gradient is scaled by 1e-12)."""
    return train(grad_scaled(), Hyperparams("sgd", 0.5), EPOCHS).history


def only_axes(fig: Figure) -> Axes:
    assert len(fig.axes) == 1
    return fig.axes[0]


def legend_labels(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_one_line_per_tensor_on_log_y_with_the_stalled_band(history: EpochStats) -> None:
    ax = only_axes(plots.tensor_update_ratios(history, LABEL))
    assert (ax.get_xscale(), ax.get_yscale()) == ("linear", "log")
    assert ax.get_title() == f"Update ratio per parameter tensor: {LABEL}"
    assert ax.get_ylabel() == "update ratio (|Δθ| / |θ| per step)"
    assert legend_labels(ax) == ["first.weight (stalled)", "first.bias", "last.weight",
                                 "last.bias", "stalled (< 1e-6)", "target (~1e-3)"]
    *lines, target = ax.lines
    for line, tensor in zip(lines, history.tensors):
        np.testing.assert_array_equal(line.get_xdata(), history.epochs)
        np.testing.assert_array_equal(line.get_ydata(),
                                      history.metric(f"update_ratio/{tensor}"))
    assert lines[0].get_linewidth() > lines[1].get_linewidth()  # the stalled one stands out
    np.testing.assert_array_equal(target.get_ydata(), [Thresholds().target_ratio] * 2)
    band, = [p for p in ax.patches if p.get_label() == "stalled (< 1e-6)"]
    extent = band.get_extents().transformed(ax.transData.inverted())
    assert extent.y1 == pytest.approx(Thresholds().stalled_ratio)
    low, high = ax.get_ylim()
    stalled = history.metric("update_ratio/first.weight")
    assert extent.y0 == pytest.approx(low) and low < stalled.min() and high > 1e-3


def test_the_band_follows_the_given_threshold(history: EpochStats) -> None:
    ax = only_axes(plots.tensor_update_ratios(history, stalled_below=1e-15))
    assert legend_labels(ax)[0] == "first.weight"
    assert "stalled (< 1e-15)" in legend_labels(ax)
    assert ax.get_title() == "Update ratio per parameter tensor"


def test_tensor_curves_from_mlflow_draw_the_same(history: EpochStats) -> None:
    read = {f"update_ratio/{t}": plots.Curve(history.epochs.astype(float), v)
            for t, v in history.per_tensor("update_ratio").items()}
    read["loss"] = plots.Curve(history.epochs.astype(float), history.loss)
    assert list(plots.tensor_series(read)) == list(history.tensors)
    ax = only_axes(plots.tensor_update_ratios(read))
    assert len(ax.lines) == len(history.tensors) + 1


def test_a_history_without_per_tensor_metrics_says_so() -> None:
    single = train(build("rebalance"), Hyperparams("sgd", 0.01), 3).history
    assert plots.tensor_series(single) == {}
    ax = only_axes(plots.tensor_update_ratios(single))
    assert [t.get_text() for t in ax.texts] == [
        "no per-tensor statistics (one tensor, or turned off)"]


@pytest.mark.parametrize("multi", [True, False], ids=["several-tensors", "rebalance"])
def test_write_sweep_plots_adds_the_tensor_plot_only_with_per_tensor_metrics(
        history: EpochStats, tmp_path: Path, multi: bool) -> None:
    study = optuna.create_study(study_name="tensors")
    best = history if multi else train(build("rebalance"), Hyperparams("sgd", 0.01), 3).history
    paths = plots.write_sweep_plots(study, {LABEL: best}, None, tmp_path, trials_frame(study),
                                    tensors=(LABEL, best))
    names = [p.name for p in paths]
    assert names[:6] == list(plots.FILES)
    assert names[6:] == ([plots.TENSOR_FILE] if multi else [])
    assert sorted(tmp_path.iterdir()) == sorted(paths)
    if multi:
        data = (tmp_path / plots.TENSOR_FILE).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
