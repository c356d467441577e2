"""The sweep's plots, from the study and the trials' metric histories in MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sweeps.hparams import Hyperparams
from sweeps.loop import train

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient

    from objectives import Objective

__all__ = ["REFERENCE", "write_report"]

REFERENCE = Hyperparams("sgd", 0.01)  # the seed's configuration, drawn dashed for contrast


def write_report(study: optuna.Study, client: MlflowClient, objective: Objective, epochs: int,
                 out_dir: str | Path, *, top: int = 5, device: str = "cpu") -> list[Path]:
    """Write the five sweep plots into ``out_dir``: loss and update-ratio curves of the
    ``top`` trials and of the reference run, final loss against lr, the optimisation history
    and the parameter importances."""
    from .plots import histories_by_run, top_run_ids, write_sweep_plots

    curves = histories_by_run(client, top_run_ids(study, top))
    reference = train(objective, REFERENCE, epochs, device=device).history
    label = f"reference: {REFERENCE.optimizer} lr={REFERENCE.lr:g}"
    return write_sweep_plots(study, curves, {label: reference}, out_dir)
