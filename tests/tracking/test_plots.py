"""The sweep's plots: each figure has the expected axes, scales, labels and series, drawn from
the data it was given; ``write_sweep_plots`` writes the six PNG files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.markers import MarkerStyle
from mlflow import MlflowClient
from mlflow.entities import Metric
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from sweeps.optim.optimizers import OPTIMIZERS as TOOL_OPTIMIZERS
from sweeps.study.results import trials_frame
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from sweeps.training.stats import EpochStats
from tests.toy_objectives import Quadratic
from tracking import plots

EPOCHS = 40
OPTIMIZERS = ["sgd", "adam"]
SCHEDULERS = ["none", "cosine"]
# (optimizer, lr, scheduler, state, final loss): the trials of the synthetic study, by number.
TRIALS = [
    ("sgd", 0.3, "none", TrialState.COMPLETE, 1e-3),
    ("adam", 1e-2, "cosine", TrialState.COMPLETE, 4e-5),
    ("sgd", 1e-4, "none", TrialState.PRUNED, 2.0),
    ("adam", 30.0, "none", TrialState.FAIL, None),
    ("sgd", 0.05, "cosine", TrialState.COMPLETE, 2e-2),
    ("adam", 3e-3, "none", TrialState.COMPLETE, 1e-6),
    ("sgd", 0.9, "cosine", TrialState.COMPLETE, 5e-4),
]
BEST_SO_FAR = [1e-3, 4e-5, 4e-5, 1e-6, 1e-6]  # over the completed trials 0, 1, 4, 5, 6


def trial(optimizer: str, lr: float, scheduler: str, state: TrialState,
          loss: float | None, run_id: str | None = None) -> optuna.trial.FrozenTrial:
    """A finished trial as ``sweeps.study`` records it: per-optimizer lr, hparams attribute."""
    lr_range = (1e-5, 1e3) if optimizer == "sgd" else (1e-5, 1e2)
    distributions = {"optimizer": CategoricalDistribution(OPTIMIZERS),
                     "scheduler": CategoricalDistribution(SCHEDULERS),
                     f"lr_{optimizer}": FloatDistribution(*lr_range, log=True)}
    attrs: dict[str, Any] = {"hparams": Hyperparams(optimizer, lr, scheduler).to_dict(),
                             "final_loss": loss}
    if run_id is not None:
        attrs["mlflow_run_id"] = run_id
    return create_trial(
        state=state, value=loss if state == TrialState.COMPLETE else None,
        params={"optimizer": optimizer, "scheduler": scheduler, f"lr_{optimizer}": lr},
        distributions=distributions, user_attrs=attrs,
        intermediate_values={10: loss} if state == TrialState.PRUNED and loss else None,
    )


def make_study(rows: list[tuple[Any, ...]], name: str = "plots") -> optuna.Study:
    study = optuna.create_study(study_name=name, direction="minimize")
    study.add_trials([trial(*row) for row in rows])
    return study


@pytest.fixture(scope="module")
def study() -> optuna.Study:
    return make_study(TRIALS)


@pytest.fixture(scope="module")
def histories() -> dict[str, EpochStats]:
    """Real per-epoch statistics of a few trainings of a toy quadratic."""
    runs = {"#1 sgd lr=0.3": Hyperparams("sgd", 0.3), "#2 adam lr=0.01": Hyperparams("adam", 0.01),
            "#3 sgd lr=0.05 cosine": Hyperparams("sgd", 0.05, "cosine")}
    return {label: train(Quadratic(), hp, EPOCHS).history for label, hp in runs.items()}


@pytest.fixture(scope="module")
def seed() -> dict[str, EpochStats]:
    """A stalled run: SGD with a tiny learning rate (update ratio 2 * lr = 2e-8)."""
    return {"seed: sgd lr=1e-8": train(Quadratic(), Hyperparams("sgd", 1e-8), EPOCHS).history}


def only_axes(fig: Figure) -> Axes:
    assert len(fig.axes) == 1
    return fig.axes[0]


def legend_labels(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def legend_is_outside_the_plot(fig: Figure, ax: Axes) -> bool:
    fig.draw_without_rendering()
    legend = ax.get_legend()
    assert legend is not None
    return not legend.get_window_extent().overlaps(ax.get_window_extent())


def notes(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_loss_curves_draw_each_trial_and_the_reference_dashed_on_log_y(
        histories: dict[str, EpochStats], seed: dict[str, EpochStats]) -> None:
    fig = plots.loss_curves(histories, seed)
    ax = only_axes(fig)
    assert (ax.get_xscale(), ax.get_yscale()) == ("linear", "log")
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "loss")
    assert ax.get_title() == "Training loss of the top trials"
    assert legend_labels(ax) == [*histories, *seed]
    assert len(ax.lines) == len(histories) + len(seed)
    for line, stats in zip(ax.lines, [*histories.values(), *seed.values()]):
        np.testing.assert_array_equal(line.get_xdata(), stats.epochs)
        np.testing.assert_array_equal(line.get_ydata(), stats.loss)
    reference = ax.lines[-1]
    assert (reference.get_linestyle(), reference.get_color()) == ("--", "black")
    assert all(line.get_linestyle() == "-" for line in ax.lines[:-1])
    assert legend_is_outside_the_plot(fig, ax)


def test_loss_curves_take_epoch_value_pairs_and_no_reference() -> None:
    curve = (np.arange(5, 10), np.array([1.0, 0.5, 0.2, 0.1, 0.05]))
    ax = only_axes(plots.loss_curves({"mine": curve}, None))
    assert legend_labels(ax) == ["mine"]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), curve[0])
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), curve[1])


def test_curves_with_mismatched_lengths_name_the_metric() -> None:
    with pytest.raises(ValueError, match="loss: 3 epochs but 2 values"):
        plots.loss_curves({"bad": (np.arange(3), np.ones(2))})


def test_update_ratio_curves_shade_the_stalled_band_and_mark_the_target(
        histories: dict[str, EpochStats], seed: dict[str, EpochStats]) -> None:
    fig = plots.update_ratio_curves(histories, seed)
    ax = only_axes(fig)
    assert (ax.get_xscale(), ax.get_yscale()) == ("linear", "log")
    assert ax.get_xlabel() == "epoch"
    assert ax.get_ylabel() == "update ratio (|Δθ| / |θ| per step)"
    assert ax.get_title() == "Update ratio of the top trials"
    assert legend_labels(ax) == [*histories, *seed, "stalled (< 1e-6)", "target (~1e-3)"]
    *curves, target = ax.lines
    for line, stats in zip(curves, [*histories.values(), *seed.values()]):
        np.testing.assert_array_equal(line.get_xdata(), stats.epochs)
        np.testing.assert_array_equal(line.get_ydata(), stats.update_ratio)
    np.testing.assert_array_equal(target.get_ydata(), [1e-3, 1e-3])
    band = [p for p in ax.patches if p.get_label() == "stalled (< 1e-6)"]
    assert len(band) == 1
    extent = band[0].get_extents().transformed(ax.transData.inverted())
    assert extent.y1 == pytest.approx(1e-6)
    low, high = ax.get_ylim()
    assert extent.y0 <= low < 2e-8 and high > 1e-3  # the band, the seed and the target show
    assert legend_is_outside_the_plot(fig, ax)


def test_update_ratio_threshold_is_a_parameter(histories: dict[str, EpochStats]) -> None:
    ax = only_axes(plots.update_ratio_curves(histories, stalled_below=1e-5))
    assert "stalled (< 1e-5)" in legend_labels(ax)


def test_loss_vs_lr_has_one_series_per_optimizer_and_marks_pruned_and_failed(
        study: optuna.Study) -> None:
    frame = trials_frame(study)
    fig = plots.loss_vs_lr(frame, order=tuple(TOOL_OPTIMIZERS))
    ax = only_axes(fig)
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("learning rate", "final loss")
    assert ax.get_title() == "Final loss against learning rate"
    assert legend_labels(ax) == ["sgd", "adam", "pruned (value when stopped)",
                                 "failed (no value; drawn above the others)"]
    assert legend_is_outside_the_plot(fig, ax)
    drawn = {c.get_label(): c for c in ax.collections if isinstance(c, PathCollection)}
    assert len(drawn) == 3 * len(OPTIMIZERS)  # completed, pruned, failed for each

    def offsets(label: str) -> list[tuple[float, float]]:
        return [tuple(xy) for xy in np.asarray(drawn[label].get_offsets())]

    assert offsets("sgd") == [(0.3, 1e-3), (0.05, 2e-2), (0.9, 5e-4)]
    assert offsets("adam") == [(1e-2, 4e-5), (3e-3, 1e-6)]
    assert offsets("_sgd pruned") == [(1e-4, 2.0)]
    assert offsets("_adam failed") == [(30.0, 6.0)]  # three times the highest final loss
    assert len(drawn["_sgd pruned"].get_facecolors()) == 0  # hollow
    cross = MarkerStyle("x")
    np.testing.assert_array_equal(drawn["_adam failed"].get_paths()[0].vertices,
                                  cross.get_path().transformed(cross.get_transform()).vertices)
    # each optimizer keeps one colour across its completed, pruned and failed trials
    colors = plots.optimizer_colors(OPTIMIZERS, order=tuple(TOOL_OPTIMIZERS))
    assert colors == {"sgd": "C0", "adam": "C3"}  # their slots in the tool's OPTIMIZERS


def test_loss_vs_lr_leaves_out_trials_still_running() -> None:
    import pandas as pd

    frame = pd.DataFrame({"optimizer": ["sgd", "sgd"], "lr": [0.1, 1.0],
                          "value": [0.5, None], "state": ["COMPLETE", "RUNNING"]})
    ax = only_axes(plots.loss_vs_lr(frame))
    assert legend_labels(ax) == ["sgd"]
    shown = [xy.tolist() for c in ax.collections for xy in np.asarray(c.get_offsets())]
    assert shown == [[0.1, 0.5]]


def test_a_maximised_metric_is_named_ranked_best_first_and_drawn_on_a_linear_axis() -> None:
    rows = [("sgd", 0.1, "none", TrialState.COMPLETE, 0.91, "run-a"),
            ("adam", 1e-3, "none", TrialState.COMPLETE, 0.97, "run-b"),
            ("adam", 1e-2, "none", TrialState.COMPLETE, 0.95, "run-c")]
    study = optuna.create_study(study_name="acc", direction="maximize")
    study.add_trials([trial(*row) for row in rows])
    assert list(plots.top_run_ids(study, k=3).values()) == ["run-b", "run-c", "run-a"]
    ax = only_axes(plots.loss_vs_lr(trials_frame(study), metric="val_accuracy"))
    assert (ax.get_yscale(), ax.get_ylabel()) == ("linear", "val_accuracy")
    assert ax.get_title() == "val_accuracy against learning rate"
    history = only_axes(plots.optimization_history(study, "val_accuracy"))
    assert history.get_ylabel() == "val_accuracy (objective value)"
    (best,) = history.lines
    np.testing.assert_array_equal(best.get_ydata(), [0.91, 0.97, 0.97])


def test_optimization_history_shows_values_and_the_best_so_far(study: optuna.Study) -> None:
    fig = plots.optimization_history(study)
    ax = only_axes(fig)
    assert (ax.get_xscale(), ax.get_yscale()) == ("linear", "log")
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("trial number",
                                                   "final loss (objective value)")
    assert ax.get_title() == "Optimization history of study 'plots'"
    assert legend_labels(ax) == ["completed trial", "pruned (last reported value)",
                                 "best so far"]
    assert legend_is_outside_the_plot(fig, ax)
    completed, pruned = ax.collections
    assert np.asarray(completed.get_offsets()).tolist() == [
        [0, 1e-3], [1, 4e-5], [4, 2e-2], [5, 1e-6], [6, 5e-4]]
    assert np.asarray(pruned.get_offsets()).tolist() == [[2, 2.0]]
    (best,) = ax.lines
    np.testing.assert_array_equal(best.get_xdata(), [0, 1, 4, 5, 6])
    np.testing.assert_array_equal(best.get_ydata(), BEST_SO_FAR)


def test_optimization_history_of_a_maximized_study_keeps_the_highest() -> None:
    study = optuna.create_study(direction="maximize")
    for value in (0.2, 0.5, 0.3, 0.9):
        study.add_trial(create_trial(value=value))
    (best,) = only_axes(plots.optimization_history(study)).lines
    np.testing.assert_array_equal(best.get_ydata(), [0.2, 0.5, 0.5, 0.9])


def test_optimization_history_without_completed_trials_says_so() -> None:
    study = make_study([("adam", 30.0, "none", TrialState.FAIL, None)])
    ax = only_axes(plots.optimization_history(study))
    assert notes(ax) == ["no completed trial yet"]
    assert not ax.lines and not ax.collections


def test_param_importances_rank_the_merged_lr_as_horizontal_bars(study: optuna.Study) -> None:
    ax = only_axes(plots.param_importances(study))
    assert ax.get_title() == "Parameter importances of study 'plots'"
    assert ax.get_xlabel() == ("importance for the final loss (fraction of the total; "
                               "5 completed trials)")
    assert ax.get_ylabel() == "parameter"
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(names) == ["lr", "optimizer", "scheduler"]  # lr_sgd + lr_adam merged
    widths = [bar.get_width() for bar in ax.patches]
    assert len(widths) == 3
    assert sum(widths) == pytest.approx(1.0)
    assert widths == sorted(widths)  # the most important bar on top


@pytest.mark.parametrize("rows", [[], [TRIALS[0]], [TRIALS[0], TRIALS[2], TRIALS[3]]],
                         ids=["empty", "one-completed", "one-completed-and-others"])
def test_param_importances_with_fewer_than_two_completed_trials_says_so(
        rows: list[tuple[Any, ...]]) -> None:
    ax = only_axes(plots.param_importances(make_study(rows)))
    n = sum(1 for row in rows if row[3] == TrialState.COMPLETE)
    assert notes(ax) == [f"parameter importances need at least 2 completed trials "
                         f"(this study has {n})"]
    assert not ax.patches


def test_write_sweep_plots_writes_six_png_files(
        study: optuna.Study, histories: dict[str, EpochStats], seed: dict[str, EpochStats],
        tmp_path: Path) -> None:
    out = tmp_path / "plots"
    paths = plots.write_sweep_plots(study, histories, seed, out, trials_frame(study))
    assert [p.name for p in paths] == ["loss_curves.png", "update_ratio.png", "loss_vs_lr.png",
                                       "optimization_history.png", "param_importances.png",
                                       "parallel_coordinates.png"]
    assert sorted(out.iterdir()) == sorted(paths)
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


@pytest.mark.parametrize(("number", "hparams", "label"), [
    (7, {"optimizer": "adam", "lr": 0.0032, "scheduler": "cosine"}, "#7 adam lr=3.2e-3 cosine"),
    (0, {"optimizer": "sgd", "lr": 0.01, "scheduler": "none"}, "#0 sgd lr=0.01"),
    (3, {"optimizer": "momentum", "lr": 1802878.2, "scheduler": "step"},
     "#3 momentum lr=1.8e6 step"),
    (4, {"optimizer": "adagrad", "lr": 20.0}, "#4 adagrad lr=20"),
])
def test_trial_label(number: int, hparams: dict[str, Any], label: str) -> None:
    assert plots.trial_label(number, hparams) == label


def test_histories_from_mlflow_feed_the_plots(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri="sqlite:///:memory:")  # real SQLite, no migrations on disk
    experiment = client.create_experiment("plots", artifact_location=tmp_path.as_uri())
    run_ids = []
    for scale in (1.0, 2.0):
        run_id = client.create_run(experiment).info.run_id
        steps = [2, 0, 1]  # logged out of order; read back by step
        client.log_batch(run_id, metrics=[
            *(Metric("loss", scale / (s + 1), 0, s) for s in steps),
            *(Metric("update_ratio", scale * 1e-3 / (s + 1), 0, s) for s in steps)])
        run_ids.append(run_id)
    rows = [("sgd", 0.1, "none", TrialState.COMPLETE, 0.5, run_ids[1]),
            ("adam", 0.01, "none", TrialState.COMPLETE, 0.2, run_ids[0]),
            ("sgd", 1.0, "none", TrialState.COMPLETE, 0.9)]  # no run id: not listed
    labelled = plots.top_run_ids(make_study(rows), k=5)
    assert labelled == {"#1 adam lr=0.01": run_ids[0], "#0 sgd lr=0.1": run_ids[1]}

    loss = plots.histories_from_mlflow(client, labelled, "loss")
    assert list(loss) == ["#1 adam lr=0.01", "#0 sgd lr=0.1"]
    np.testing.assert_array_equal(loss["#0 sgd lr=0.1"].epochs, [0, 1, 2])
    np.testing.assert_allclose(loss["#0 sgd lr=0.1"].values, [2.0, 1.0, 2 / 3])
    by_id = plots.histories_from_mlflow(client, run_ids, "loss")
    assert list(by_id) == run_ids

    curves = plots.histories_by_run(client, labelled)
    ax = only_axes(plots.update_ratio_curves(curves))
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [2e-3, 1e-3, 2e-3 / 3])
    ax = only_axes(plots.loss_curves(curves))
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1.0, 0.5, 1 / 3])


def test_infinite_values_read_back_from_mlflow_are_infinite_and_leave_the_axes_finite(
        tmp_path: Path) -> None:
    """MLflow stores +-inf as +-max double; read back as such they would overflow the update
    ratio axes (a zero-initialised bias has an infinite ratio at epoch 0)."""
    client = MlflowClient(tracking_uri="sqlite:///:memory:")
    experiment = client.create_experiment("inf", artifact_location=tmp_path.as_uri())
    run_id = client.create_run(experiment).info.run_id
    client.log_batch(run_id, metrics=[Metric("update_ratio/0.bias", v, 0, s) for s, v in
                                      enumerate([math.inf, 1e-3, 2e-3])])
    curves = plots.tensor_histories(client, run_id)
    np.testing.assert_array_equal(curves["update_ratio/0.bias"].values, [math.inf, 1e-3, 2e-3])
    ax = only_axes(plots.tensor_update_ratios(curves))
    assert all(math.isfinite(y) for y in ax.get_ylim())
