"""All of a sweep's plots at its end, written as PNG files into one folder (``FILES``, then
``TENSOR_FILE`` where the best trial has per-tensor statistics, then ``PARETO_FILE`` for a
study of several metrics)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tracking.plots.curves import loss_curves, update_ratio_curves
from tracking.plots.figures import save_all
from tracking.plots.importances import param_importances
from tracking.plots.parallel import parallel_coordinates
from tracking.plots.pareto import pareto_front
from tracking.plots.series import History, tensor_series
from tracking.plots.tensors import tensor_update_ratios
from tracking.plots.trials import loss_vs_lr, optimization_history

if TYPE_CHECKING:
    import optuna
    import pandas as pd

__all__ = ["FILES", "PARETO_FILE", "TENSOR_FILE", "write_sweep_plots"]

# File names written by ``write_sweep_plots``, in order.
FILES = ("loss_curves.png", "update_ratio.png", "loss_vs_lr.png", "optimization_history.png",
         "param_importances.png", "parallel_coordinates.png")
# ... and after them, where the best trial has per-tensor statistics:
TENSOR_FILE = "tensor_update_ratio.png"
PARETO_FILE = "pareto_front.png"  # ... and last, for a study of several metrics


def write_sweep_plots(study: optuna.Study, curves: Mapping[str, History],
                      reference: Mapping[str, History] | None, out_dir: str | Path,
                      frame: pd.DataFrame, order: Sequence[str] = (), *,
                      tensors: tuple[str, History] | None = None,
                      metric: str = "loss",
                      metrics: Sequence[tuple[str, str]] = ()) -> list[Path]:
    """Write the six plots (``FILES``) into ``out_dir``, then ``TENSOR_FILE`` where
    ``tensors`` (label and history of the best trial) has per-tensor update ratios, then
    ``PARETO_FILE`` where ``metrics`` (name, direction) are several; return their paths in
    that order.

    ``curves`` and ``reference`` need both ``metric`` (the study's) and ``update_ratio``
    (``EpochStats``, or ``{metric: Curve}`` from ``histories_by_run``); ``frame`` is the
    study's trials, one row each (columns as ``loss_vs_lr`` reads them); ``order`` fixes the
    optimizers' colours.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = (
        loss_curves(curves, reference, metric),
        update_ratio_curves(curves, reference),
        loss_vs_lr(frame, order, metric),
        optimization_history(study, "final loss" if metric == "loss" else metric),
        param_importances(study),
        parallel_coordinates(frame, order, metric=metric,
                             maximize=study.directions[0].name == "MAXIMIZE"),
    )
    named = [(fig, out / name) for fig, name in zip(figures, FILES)]
    if tensors is not None and tensor_series(tensors[1]):
        named.append((tensor_update_ratios(tensors[1], tensors[0]), out / TENSOR_FILE))
    if len(metrics) > 1:
        names, directions = zip(*metrics, strict=True)
        named.append((pareto_front(frame, names, directions), out / PARETO_FILE))
    return save_all(named)
