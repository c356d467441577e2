"""MLflow's own parallel-coordinates view in a real browser, on the ``log10_lr`` param.

That view draws every axis linearly, so learning rates a decade apart crowd the bottom of an
``lr`` axis; each trial's run therefore also logs ``log10_lr`` (``Sweep.run_params``). Here
runs logged the same way, with learning rates from 1e-4 to 8e-2, are opened in the compare
view of a real ``mlflow server`` and the plot is given ``log10_lr`` (or ``lr``), ``optimizer``
and ``val_loss``. Where a run crosses an axis is read from the axis the browser drew: its
ticks' labels and heights. Same requirements, fixtures and screenshots as
``test_ui_browser.py``.

    python -m pytest tests/tracking/test_ui_parallel.py
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from sweeps.training.hparams import Hyperparams
from tests.servers import MlflowServer
from tests.tracking.test_ui_browser import (  # noqa: F401 (fixtures)
    TIMEOUT_MS,
    _open,
    _screenshot,
    browser,
    browser_requirements,
    page,
)
from tracking.links import compare_view
from tracking.run_end import terminate

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.slow

# The runs: (run name, optimizer, lr, val_loss).
RUNS = [("trial-0", "sgd", 1e-4, 2.30), ("trial-1", "momentum", 4e-4, 1.90),
        ("trial-2", "adam", 2e-3, 0.40), ("trial-3", "adamw", 1e-2, 0.12),
        ("trial-4", "adagrad", 8e-2, 0.90)]
SMALL_LRS = 3  # the runs whose lrs (up to 2e-3) an lr axis up to 8e-2 crowds at its bottom


@dataclass(frozen=True)
class Logged:
    """The runs in MLflow: their experiment, and run ids by run name."""

    base: str
    experiment_id: str
    run_ids: dict[str, str]


@dataclass(frozen=True)
class Axis:
    """One axis as drawn: the values labelled at its ends, its ends' heights and its ticks
    (value, height), heights in px from the top of the plot."""

    top: float
    bottom: float
    top_y: float
    bottom_y: float
    ticks: list[tuple[float, float]]

    def px_per_unit(self) -> list[float]:
        """The px between neighbouring ticks per unit of value (the same all along: linear)."""
        return [(y1 - y0) / (v1 - v0)
                for (v0, y0), (v1, y1) in zip(self.ticks, self.ticks[1:], strict=False)]

    def height_of(self, value: float) -> float:
        """Where a line through ``value`` crosses the axis, as a share of the axis from its
        bottom end (0) to its top end (1), read off the first and last tick."""
        (v0, y0), (v1, y1) = self.ticks[0], self.ticks[-1]
        y = y0 + (value - v0) * (y1 - y0) / (v1 - v0)
        return (self.bottom_y - y) / (self.bottom_y - self.top_y)


def _log10_lr(lr: float) -> float:
    return round(math.log10(lr), 4)  # as Sweep.run_params logs it


@pytest.fixture(scope="module")
def logged() -> Iterator[Logged]:
    """The runs, logged as a sweep logs its trials, in a fresh store behind ``mlflow server``."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    with MlflowServer() as server:
        client = MlflowClient(tracking_uri=server.url)
        experiment_id = client.create_experiment(f"parallel-{uuid.uuid4().hex[:8]}")
        run_ids = {}
        for name, optimizer, lr, val_loss in RUNS:
            run = client.create_run(experiment_id, run_name=name)
            params = {**Hyperparams(optimizer, lr).to_dict(), "log10_lr": _log10_lr(lr)}
            client.log_batch(
                run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()],
                metrics=[Metric("val_loss", val_loss, 0, 0)],
            )  # fmt: skip
            terminate(client, run.info.run_id, "FINISHED")
            run_ids[name] = run.info.run_id
        yield Logged(server.url, experiment_id, run_ids)


def _plot_panel(page: Page, logged: Logged) -> Locator:
    """The compare view of the runs, its "Parallel Coordinates Plot" tab drawn."""
    _open(page, compare_view(logged.base, logged.experiment_id, list(logged.run_ids.values())),
          page.get_by_text(f"Comparing {len(RUNS)} Runs from 1 Experiment"))
    panel = page.get_by_role("tabpanel", name="Parallel Coordinates Plot")
    panel.locator(".js-plotly-plot").wait_for()
    return panel


def _choose(page: Page, panel: Locator, params: list[str], metrics: list[str]) -> None:
    """Replace the plot's default choice with ``params`` and ``metrics``, in order."""
    panel.get_by_role("button", name="Clear All").click()
    for box, names in zip(panel.get_by_role("combobox").all(), (params, metrics), strict=True):
        box.click()
        for name in names:
            page.keyboard.type(name)
            page.locator(f'.du-bois-light-select-dropdown:visible [title="{name}"]').click()
        page.keyboard.press("Escape")


def _drawn_axes(page: Page, panel: Locator, titles: list[str]) -> dict[str, Locator]:
    """The plot's axes by title, once the browser has drawn exactly ``titles``."""
    from playwright.sync_api import expect

    axes = panel.locator("g.y-axis")
    expect(axes.locator("text.axis-title")).to_have_text(titles, timeout=TIMEOUT_MS)
    return dict(zip(titles, axes.all(), strict=True))


def _numeric_axis(axis: Locator) -> Axis:
    def number(element: Locator) -> float:
        return float((element.text_content() or "").replace("\u2212", "-"))  # d3's minus sign

    ticks = [(number(tick), float(tick.evaluate(
        "t => t.parentNode.transform.baseVal.consolidate().matrix.f")))
        for tick in axis.locator("g.axis g.tick text").all()]
    top_y, bottom_y = axis.locator("g.axis path.domain").evaluate(
        "p => { const box = p.getBBox(); return [box.y, box.y + box.height]; }")
    return Axis(number(axis.locator("text.axis-extent-top-text")),
                number(axis.locator("text.axis-extent-bottom-text")), top_y, bottom_y, ticks)


def _plotted(panel: Locator, label: str) -> list[float]:
    """The values MLflow hands the plot for the axis ``label``, one a run."""
    return panel.locator(".js-plotly-plot").evaluate(
        "(g, label) => g.data[0].dimensions.find(d => d.label === label).values", label)


def test_log10_lr_axis_spreads_the_runs_a_decade_apart(page: Page, logged: Logged) -> None:
    panel = _plot_panel(page, logged)
    _choose(page, panel, ["log10_lr", "optimizer"], ["val_loss"])
    axes = _drawn_axes(page, panel, ["log10_lr", "optimizer", "val_loss"])
    logged_values = [_log10_lr(lr) for _, _, lr, _ in RUNS]
    assert sorted(_plotted(panel, "log10_lr")) == logged_values

    axis = _numeric_axis(axes["log10_lr"])
    assert (axis.bottom, axis.top) == pytest.approx((-4.0, _log10_lr(8e-2)), abs=1e-5)
    assert {-4.0, -3.0, -2.0} <= {value for value, _ in axis.ticks}  # the decades are ticked
    px_per_unit = axis.px_per_unit()
    assert px_per_unit[0] < 0  # larger values higher up
    assert px_per_unit == pytest.approx([px_per_unit[0]] * len(px_per_unit), rel=0.01)  # linear
    heights = [axis.height_of(value) for value in logged_values]
    assert (heights[0], heights[-1]) == pytest.approx((0.0, 1.0), abs=0.01)  # the axis' ends
    gaps = [b - a for a, b in zip(heights, heights[1:], strict=False)]
    assert min(gaps) > 0.15  # each run well apart from the next (on lr three share 3%)
    categories = axes["optimizer"].locator("g.axis g.tick text").all_text_contents()
    assert categories == sorted(optimizer for _, optimizer, _, _ in RUNS)
    _screenshot(page, "parallel-log10_lr")


def test_lr_axis_crowds_the_small_learning_rates_at_its_bottom(
    page: Page, logged: Logged
) -> None:
    panel = _plot_panel(page, logged)
    _choose(page, panel, ["lr", "optimizer"], ["val_loss"])
    axes = _drawn_axes(page, panel, ["lr", "optimizer", "val_loss"])
    lrs = [lr for _, _, lr, _ in RUNS]
    assert sorted(_plotted(panel, "lr")) == lrs

    axis = _numeric_axis(axes["lr"])
    assert (axis.bottom, axis.top) == pytest.approx((1e-4, 8e-2), abs=1e-5)
    heights = [axis.height_of(lr) for lr in lrs]
    assert (heights[0], heights[-1]) == pytest.approx((0.0, 1.0), abs=0.01)  # the axis' ends
    assert max(heights[:SMALL_LRS]) < 0.03  # 1e-4 to 2e-3: over a decade in 3% of the axis
    _screenshot(page, "parallel-lr")
