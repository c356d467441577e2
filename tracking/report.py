"""The sweep's plots, drawn in a short-lived child process.

Matplotlib and the figures would add about 150 MiB to the sweep process at its very end; the
child, which never imports torch, stays far smaller. Curves of the top trials come from the
sweep's memory (``histories``: run id -> EpochStats), read back from MLflow only for trials an
earlier run of a resumed study trained.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps.hparams import Hyperparams
from sweeps.loop import train

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient

    from objectives import Objective
    from sweeps.stats import EpochStats

__all__ = ["REFERENCE", "write_report"]

REFERENCE = Hyperparams("sgd", 0.01)  # the seed's configuration, drawn dashed for contrast


def write_report(study: optuna.Study, storage_url: str, client: MlflowClient,
                 objective: Objective, epochs: int, out_dir: str | Path, *,
                 histories: dict[str, EpochStats] | None = None, top: int = 5,
                 device: str = "cpu") -> list[Path]:
    """Write the five sweep plots into ``out_dir``: loss and update-ratio curves of the
    ``top`` trials and of the reference run, final loss against lr, the optimisation history
    and the parameter importances."""
    from .plots import histories_by_run, top_run_ids

    known = histories or {}
    labelled = top_run_ids(study, top)
    missing = {label: run for label, run in labelled.items() if run not in known}
    curves: dict[str, Any] = histories_by_run(client, missing) if missing else {}
    curves = {label: known.get(run) or curves[label] for label, run in labelled.items()}
    reference = train(objective, REFERENCE, epochs, device=device).history
    label = f"reference: {REFERENCE.optimizer} lr={REFERENCE.lr:g}"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_draw, storage_url, study.study_name, curves, {label: reference},
                             str(out_dir))
        return [Path(p) for p in future.result()]


def _draw(storage_url: str, study_name: str, curves: dict[str, Any],
          reference: dict[str, Any], out_dir: str) -> list[str]:
    import optuna

    from sweeps.results import opened_study

    from .plots import write_sweep_plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with opened_study(storage_url, study_name) as study:
        return [str(p) for p in write_sweep_plots(study, curves, reference, out_dir)]
