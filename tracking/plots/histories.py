"""What the curve plots draw, read back: the study's best trials as {legend label: MLflow run
id} (``top_run_ids``), and their per-epoch metrics from MLflow as ``Curve`` objects."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tracking.plots.figures import sci
from tracking.plots.series import Curve

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient

__all__ = ["PLOTTED", "histories_by_run", "histories_from_mlflow", "tensor_histories",
           "top_run_ids", "trial_label"]

PLOTTED = ("loss", "update_ratio")  # the per-epoch metrics the curve plots read
_MLFLOW_INF = np.finfo(np.float64).max  # how MLflow stores an infinite value


def trial_label(number: int, hparams: Mapping[str, Any]) -> str:
    """``#7 adam lr=3.2e-3 cosine``: a trial as a legend entry."""
    lr = hparams.get("lr")
    text = f"#{number} {hparams.get('optimizer', '?')}"
    if lr is not None:
        text += f" lr={sci(float(lr))}"
    scheduler = hparams.get("scheduler")
    if scheduler and scheduler != "none":
        text += f" {scheduler}"
    return text


def top_run_ids(study: optuna.Study, k: int = 5) -> dict[str, str]:
    """The ``k`` best completed trials, best first, as {``trial_label``: MLflow run id}."""
    from optuna.trial import TrialState

    if k < 1:
        raise ValueError(f"k must be at least 1 but got {k}.")
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values and math.isfinite(t.values[0])
                and "mlflow_run_id" in t.user_attrs]
    sign = -1.0 if study.directions[0].name == "MAXIMIZE" else 1.0
    complete.sort(key=lambda t: (sign * t.values[0], t.number))
    return {trial_label(t.number, t.user_attrs.get("hparams", {})): t.user_attrs["mlflow_run_id"]
            for t in complete[:k]}


def histories_from_mlflow(client: MlflowClient, run_ids: Mapping[str, str] | Iterable[str],
                          metric: str) -> dict[str, Curve]:
    """``metric`` of each run, by step. ``run_ids`` is {label: run id} or run ids (their own
    labels)."""
    labelled = dict(run_ids) if isinstance(run_ids, Mapping) else {r: r for r in run_ids}
    out: dict[str, Curve] = {}
    for label, run_id in labelled.items():
        points = client.get_metric_history(run_id, metric)
        by_step = {m.step: m.value for m in sorted(points, key=lambda m: (m.step, m.timestamp))}
        steps = np.array(sorted(by_step), dtype=float)
        values = np.array([by_step[s] for s in sorted(by_step)], dtype=float)
        values[np.abs(values) == _MLFLOW_INF] *= np.inf  # MLflow stores +-inf as +-max double
        out[label] = Curve(steps, values)
    return out


def histories_by_run(client: MlflowClient, run_ids: Mapping[str, str] | Iterable[str],
                     metrics: Sequence[str] = PLOTTED) -> dict[str, dict[str, Curve]]:
    """{label: {metric: Curve}} for ``write_sweep_plots``, read from MLflow."""
    labelled = dict(run_ids) if isinstance(run_ids, Mapping) else {r: r for r in run_ids}
    per_metric = {m: histories_from_mlflow(client, labelled, m) for m in metrics}
    return {label: {m: per_metric[m][label] for m in metrics} for label in labelled}


def tensor_histories(client: MlflowClient, run_id: str,
                     metric: str = "update_ratio") -> dict[str, Curve]:
    """The per-tensor ``metric`` of run ``run_id`` (``{"<metric>/<tensor>": Curve}``, as
    ``tensor_series`` reads them), read from MLflow; empty where it has none. MLflow keeps
    no order: the tensors come sorted with their numbers as numbers (``layers.2`` before
    ``layers.10``)."""
    names = sorted((k for k in client.get_run(run_id).data.metrics
                    if k.startswith(f"{metric}/")), key=_natural)
    return {name: histories_from_mlflow(client, [run_id], name)[run_id] for name in names}


def _natural(name: str) -> list[tuple[int, int | str]]:
    """Sort key: the digit runs of ``name`` as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.split(r"(\d+)", name) if part]
