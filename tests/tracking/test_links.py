"""The MLflow UI links: exact strings, as checked in Chromium against MLflow 3.17
(``tests/tracking/test_ui_browser.py`` opens them in the real UI)."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import pytest

from tracking.links import DEFAULT_BASE, compare_view, metric_view, runs_page, sweep_links

RUN_A = "a9c976f22c8842039f12faa5c1f6ee88"
RUN_B = "e7ebf53adc8049a49e62716264497fd6"
RUN_C = "211852c97e51488e90548d78e110c9ae"
RUNS_AB = f"%5B%22{RUN_A}%22%2C%22{RUN_B}%22%5D"  # ["<A>","<B>"]
EXP_7 = "%5B%227%22%5D"  # ["7"]


def _query(url: str) -> dict[str, object]:
    """The decoded JSON values of a link's query (it sits in the fragment, after ``#/...?``)."""
    fragment = urlsplit(url).fragment
    _, _, query = fragment.partition("?")
    pairs = parse_qsl(query, strict_parsing=True)
    return {key: value if key in ("x_axis", "y_axis_scale") else json.loads(value)
            for key, value in pairs}


ML = "workflowType=machine_learning"  # the UI's model-training navigation


@pytest.mark.parametrize(
    ("base", "experiment_id", "expected"),
    [
        (DEFAULT_BASE, "1", f"http://127.0.0.1:5000/#/experiments/1/runs?{ML}"),
        ("http://127.0.0.1:5000/", 1, f"http://127.0.0.1:5000/#/experiments/1/runs?{ML}"),
        ("http://localhost:8080/mlflow", "42",
         f"http://localhost:8080/mlflow/#/experiments/42/runs?{ML}"),
    ],
)
def test_runs_page_is_the_experiments_runs_tab(base: str, experiment_id: str | int,
                                               expected: str) -> None:
    assert runs_page(base, experiment_id) == expected


def test_metric_view_plots_one_metric_against_the_step() -> None:
    assert metric_view(DEFAULT_BASE, "7", [RUN_A, RUN_B]) == (
        f"http://127.0.0.1:5000/#/metric?runs={RUNS_AB}&metric=%22loss%22"
        f"&experiments={EXP_7}&plot_metric_keys=%5B%22loss%22%5D&x_axis=step"
    )


def test_metric_view_on_a_log_axis_sets_the_layout_the_ui_writes() -> None:
    url = metric_view(DEFAULT_BASE, 7, [RUN_A], "update_ratio", log_y=True)
    assert url == (
        f"http://127.0.0.1:5000/#/metric?runs=%5B%22{RUN_A}%22%5D&metric=%22update_ratio%22"
        f"&experiments={EXP_7}&plot_metric_keys=%5B%22update_ratio%22%5D"
        "&plot_layout=%7B%22autosize%22%3Atrue%2C%22yaxis%22%3A%7B%22type%22%3A%22log%22"
        "%2C%22autorange%22%3Atrue%7D%7D&x_axis=step&y_axis_scale=log"
    )
    assert _query(url)["plot_layout"] == {"autosize": True,
                                          "yaxis": {"type": "log", "autorange": True}}


def test_compare_view_lists_runs_and_experiment() -> None:
    assert compare_view(DEFAULT_BASE, "7", [RUN_A, RUN_B]) == (
        f"http://127.0.0.1:5000/#/compare-runs?runs={RUNS_AB}&experiments={EXP_7}"
    )


@pytest.mark.parametrize("run_ids", [[RUN_A], [RUN_A, RUN_B], [RUN_C, RUN_A, RUN_B]])
def test_links_keep_every_run_in_the_order_given(run_ids: list[str]) -> None:
    for url in (metric_view(DEFAULT_BASE, "3", run_ids), compare_view(DEFAULT_BASE, "3", run_ids)):
        query = _query(url)
        assert query["runs"] == run_ids
        assert query["experiments"] == ["3"]


def test_links_are_one_unbroken_word() -> None:
    """No quotes, brackets, commas or spaces: terminals and Markdown link them whole."""
    for url in sweep_links(DEFAULT_BASE, "3", [RUN_A, RUN_B, RUN_C]).values():
        after_fragment = url.partition("#")[2]
        assert not set(after_fragment) & set(' "[]{},'), url


def test_odd_metric_names_are_encoded() -> None:
    url = metric_view(DEFAULT_BASE, "3", [RUN_A], "val loss/a&b")
    assert "metric=%22val%20loss%2Fa%26b%22" in url
    assert _query(url)["metric"] == "val loss/a&b"
    assert _query(url)["plot_metric_keys"] == ["val loss/a&b"]


def test_sweep_links_name_each_view() -> None:
    links = sweep_links("http://127.0.0.1:5001", "3", [RUN_A, RUN_B])
    assert links == {
        "runs": runs_page("http://127.0.0.1:5001", "3"),
        "loss curves": metric_view("http://127.0.0.1:5001", "3", [RUN_A, RUN_B], "loss",
                                   log_y=True),
        "update ratio": metric_view("http://127.0.0.1:5001", "3", [RUN_A, RUN_B],
                                    "update_ratio", log_y=True),
        "compare": compare_view("http://127.0.0.1:5001", "3", [RUN_A, RUN_B]),
    }


@pytest.mark.parametrize("build", [metric_view, compare_view, sweep_links])
def test_no_runs_is_refused(build: Callable[..., object]) -> None:
    with pytest.raises(ValueError, match="run_ids is empty"):
        build(DEFAULT_BASE, "3", [])


def test_a_lone_run_id_string_is_refused() -> None:
    with pytest.raises(TypeError, match="not the string"):
        metric_view(DEFAULT_BASE, "3", RUN_A)
