"""The MLflow UI in a real browser: a small sweep, ``python -m sweeps.ui`` on a free port, and
Debian's Chromium driven by Playwright through the views ``tracking.links`` points at.

Needs ``/usr/bin/chromium`` (apt: chromium fonts-liberation) and the ``playwright`` package;
never ``playwright install``. Without them the tests skip, unless ``CI`` is set. Screenshots
go to ``test-artifacts/``; ``LRSWEEP_UPDATE_SCREENSHOT=1`` also refreshes ``docs/mlflow-ui.png``.

    python -m pytest tests/tracking/test_ui_browser.py
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sweeps.study.results import load_study, trials_frame
from tests.servers import free_port
from tracking.links import sweep_links

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STUDY = "ui"
TRIALS = 4
EPOCHS = 200
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
README_SCREENSHOT = REPO / "docs" / "mlflow-ui.png"
# The runs-table columns people sort trials by: (group in the column picker, name).
COLUMNS = [("Metrics", "final_loss"), ("Metrics", "best_loss"), ("Parameters", "optimizer"),
           ("Parameters", "lr"), ("Parameters", "scheduler"), ("Tags", "verdict")]
HIDDEN_COLUMNS = [("Attributes", "Dataset"), ("Attributes", "Source"), ("Attributes", "Models")]
TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Sweep:
    """What the sweep left in MLflow, as the UI should show it."""

    workdir: Path
    experiment_id: str
    parent_id: str
    trial_runs: dict[str, str]  # run name ("trial-0") -> MLflow run id, in trial order
    loss_points: dict[str, int]  # run name -> number of logged loss values
    update_ratio_points: dict[str, int]  # run name -> number of logged update_ratio values


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module", autouse=True)
def browser_requirements() -> None:
    """Skip (fail under CI) before any sweep runs when the browser pieces are missing."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install chromium fonts-liberation)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install playwright; no `playwright install`)")
    if not missing:
        return
    message = "browser test needs " + " and ".join(missing)
    if _in_ci():
        pytest.fail(f"{message}; required when CI is set", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    from mlflow import MlflowClient

    workdir = tmp_path_factory.mktemp("ui-sweep")
    proc = subprocess.run(
        [sys.executable, "-m", "sweeps.run", "--n-trials", str(TRIALS), "--epochs", str(EPOCHS),
         "--study", STUDY, "--quiet"],
        cwd=workdir, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"sweep failed:\n{proc.stdout}\n{proc.stderr}"
    frame = trials_frame(load_study(f"sqlite:///{workdir}/mlruns/optuna.db", STUDY))
    trial_runs = {f"trial-{row.trial}": str(row.mlflow_run_id)
                  for row in frame.sort_values("trial").itertuples()}
    assert len(trial_runs) == TRIALS
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None
    parent_id = client.get_run(next(iter(trial_runs.values()))).data.tags["mlflow.parentRunId"]

    def points(key: str) -> dict[str, int]:
        return {name: len(client.get_metric_history(run_id, key))
                for name, run_id in trial_runs.items()}

    return Sweep(workdir, str(experiment.experiment_id), parent_id, trial_runs,
                 points("loss"), points("update_ratio"))


@pytest.fixture(scope="module")
def ui_base(sweep: Sweep) -> Iterator[str]:
    """``python -m sweeps.ui`` on a free port, in the sweep's folder; its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = sweep.workdir / "ui.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweeps.ui", "--port", str(port)],
            cwd=sweep.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_healthy(proc, base, log_path)
        yield base
    finally:
        _stop(proc)


def _wait_healthy(proc: subprocess.Popen[bytes], base: str, log_path: Path,
                  timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sweeps.ui exited with {proc.returncode}:\n"
                               f"{log_path.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"sweeps.ui not healthy after {timeout:.0f}s:\n"
                               f"{log_path.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL whatever is left after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)  # start_new_session: the launcher leads its own group
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh context: the UI keeps expanded rows and columns in localStorage."""
    context = browser.new_context(viewport={"width": 1440, "height": 820})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def links(sweep: Sweep, ui_base: str) -> dict[str, str]:
    return sweep_links(ui_base, sweep.experiment_id, list(sweep.trial_runs.values()))


def _open(page: Page, url: str, ready: Locator) -> None:
    """Go to ``url``, wait for ``ready``, close the Assistant panel (a third of the page)."""
    page.goto(url)
    ready.first.wait_for()
    close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count():
        close.click()


def _screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"ui-{name}.png"
    page.screenshot(path=str(path))
    return path


def _run_name_cell(page: Page, name: str) -> Locator:
    return page.get_by_role("gridcell").filter(
        has=page.get_by_role("link", name=name, exact=True))


def _choose_columns(page: Page, columns: list[tuple[str, str]]) -> None:
    """Toggle columns in the "Columns" picker; names like ``lr`` occur in several groups."""
    page.get_by_role("button", name="Columns", exact=True).click()
    picker = page.get_by_role("dialog")
    search = picker.get_by_placeholder("Search columns")
    titles = picker.locator("span.du-bois-light-tree-title")  # the picker's tree nodes
    for group, name in columns:
        search.fill(name)
        titles.get_by_text(name, exact=True).first.wait_for()
        shown = titles.all_inner_texts()
        start = next(i for i, t in enumerate(shown) if t == group or t.startswith(f"{group} ("))
        titles.nth(shown.index(name, start)).click()
    page.keyboard.press("Escape")


def test_runs_page_nests_the_trials_under_the_parent_run(
    page: Page, sweep: Sweep, links: dict[str, str]
) -> None:
    parent = _run_name_cell(page, STUDY)
    _open(page, links["runs"], parent)
    assert parent.get_by_role("link").get_attribute("href") == (
        f"#/experiments/{sweep.experiment_id}/runs/{sweep.parent_id}")
    trial_links = [page.get_by_role("link", name=name, exact=True) for name in sweep.trial_runs]
    assert [link.count() for link in trial_links] == [0] * TRIALS  # collapsed under the parent
    # the model-training navigation (Runs, Models, Traces), not the GenAI one
    assert page.get_by_text("Evaluation runs").count() == 0
    _screenshot(page, "runs-collapsed")

    parent.get_by_role("button").click()  # the [+] expander beside the run name
    for name, link in zip(sweep.trial_runs, trial_links, strict=True):
        link.wait_for()
        assert link.get_attribute("href") == (
            f"#/experiments/{sweep.experiment_id}/runs/{sweep.trial_runs[name]}")

    _choose_columns(page, HIDDEN_COLUMNS + COLUMNS)
    headers = page.get_by_role("columnheader")
    for _, name in COLUMNS:
        headers.get_by_text(name, exact=True).first.wait_for()
    page.get_by_role("button", name="Toggle sidebar").click()
    page.wait_for_timeout(500)  # let the table settle into the freed width
    _screenshot(page, "runs-expanded")
    if os.environ.get("LRSWEEP_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(README_SCREENSHOT),
                        clip={"x": 0, "y": 0, "width": 1440, "height": 432})


@pytest.mark.parametrize(("view", "metric"), [("loss curves", "loss"),
                                              ("update ratio", "update_ratio")])
def test_metric_view_draws_a_curve_per_trial(
    page: Page, sweep: Sweep, links: dict[str, str], view: str, metric: str
) -> None:
    _open(page, links[view], page.locator(".js-plotly-plot"))
    for name in sweep.trial_runs:  # the legend names every trial
        page.get_by_text(f"{name} ({metric})", exact=True).wait_for()
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    drawn = plot.evaluate(
        "g => ({yaxis: g.layout.yaxis.type,"
        " traces: g.data.map(d => [d.name, d.x.length, d.y.length])})")
    assert drawn["yaxis"] == "log"
    points = {name: x for name, x, _ in drawn["traces"]}
    expected = sweep.loss_points if metric == "loss" else sweep.update_ratio_points
    assert points == expected
    assert all(n > 1 for n in points.values())
    assert page.get_by_role("switch").last.get_attribute("aria-checked") == "true"  # log switch
    _screenshot(page, f"metric-{metric}")


def test_compare_view_shows_the_trials_side_by_side(
    page: Page, sweep: Sweep, links: dict[str, str]
) -> None:
    _open(page, links["compare"], page.get_by_text(f"Comparing {TRIALS} Runs from 1 Experiment"))
    name_row = page.get_by_role("row").filter(
        has=page.get_by_role("rowheader", name="Run Name:", exact=True))
    name_row.wait_for()
    assert name_row.get_by_role("cell").all_inner_texts() == list(sweep.trial_runs)
    page.locator(".js-plotly-plot").first.wait_for()  # the parallel-coordinates plot
    _screenshot(page, "compare")
    name_row.evaluate("row => row.scrollIntoView({block: 'start'})")  # params, metrics, tags
    _screenshot(page, "compare-details")
