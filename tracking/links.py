"""Direct links into the MLflow UI (checked against MLflow 3.17).

Pure functions of their inputs: nothing here talks to a server. Every query value is compact
JSON, percent-encoded in full, so a link stays one unbroken word that terminals make clickable::

    >>> runs_page(DEFAULT_BASE, "1")
    'http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning'
    >>> compare_view(DEFAULT_BASE, "1", ["a1", "b2"])
    'http://127.0.0.1:5000/#/compare-runs?runs=%5B%22a1%22%2C%22b2%22%5D&experiments=%5B%221%22%5D'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

__all__ = ["DEFAULT_BASE", "compare_view", "metric_view", "runs_page", "sweep_links"]

DEFAULT_BASE = "http://127.0.0.1:5000"  # where ``python -m sweeps.ui`` serves by default
# What the UI itself writes when "Y-axis Log Scale" is switched on; with only
# ``y_axis_scale=log`` the axis is logarithmic but the switch shows "off".
_LOG_LAYOUT = {"autosize": True, "yaxis": {"type": "log", "autorange": True}}


def runs_page(base: str, experiment_id: str | int) -> str:
    """The experiment's table of runs in the UI's model-training view (plain
    ``#/experiments/<id>`` opens a GenAI overview, and the UI otherwise starts in its GenAI
    navigation, "Evaluation runs" and all)."""
    return (f"{_root(base)}/experiments/{quote(str(experiment_id), safe='')}/runs"
            "?workflowType=machine_learning")


def metric_view(
    base: str,
    experiment_id: str | int,
    run_ids: Sequence[str],
    metric: str = "loss",
    *,
    log_y: bool = False,
) -> str:
    """One chart of ``metric`` against the step, one curve per run, in ``run_ids`` order."""
    query: dict[str, Any] = {
        "runs": _run_list(run_ids),
        "metric": metric,
        "experiments": [str(experiment_id)],
        "plot_metric_keys": [metric],
    }
    if log_y:
        query["plot_layout"] = _LOG_LAYOUT
    params = [f"{key}={_json(value)}" for key, value in query.items()]
    params.append("x_axis=step")
    if log_y:
        params.append("y_axis_scale=log")
    return f"{_root(base)}/metric?{'&'.join(params)}"


def compare_view(base: str, experiment_id: str | int, run_ids: Sequence[str]) -> str:
    """The runs side by side: parallel coordinates, then params, metrics and tags in columns."""
    runs, experiments = _json(_run_list(run_ids)), _json([str(experiment_id)])
    return f"{_root(base)}/compare-runs?runs={runs}&experiments={experiments}"


def sweep_links(base: str, experiment_id: str | int, run_ids: Sequence[str]) -> dict[str, str]:
    """The views worth a click after a sweep, for the trials ``run_ids`` (best first)."""
    return {
        "runs": runs_page(base, experiment_id),
        "loss curves": metric_view(base, experiment_id, run_ids, "loss", log_y=True),
        "update ratio": metric_view(base, experiment_id, run_ids, "update_ratio", log_y=True),
        "compare": compare_view(base, experiment_id, run_ids),
    }


def _root(base: str) -> str:
    return f"{base.rstrip('/')}/#"


def _run_list(run_ids: Sequence[str]) -> list[str]:
    if isinstance(run_ids, str):  # a lone id would be spelled out one character per run
        raise TypeError(f"run_ids must be a sequence of run ids, not the string {run_ids!r}")
    if not run_ids:
        raise ValueError("run_ids is empty; give at least one MLflow run id")
    return [str(run_id) for run_id in run_ids]


def _json(value: Any) -> str:
    return quote(json.dumps(value, separators=(",", ":")), safe="")
