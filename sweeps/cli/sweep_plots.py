"""The sweep's plots, drawn in a child process, and what the sweep keeps for them.

Matplotlib and the figures would grow the sweep process at its very end, and importing it
takes seconds; the child imports it while the sweep still trains. Curves of
the top trials come from the sweep's memory (``BestCurves``), read back from MLflow only for
trials an earlier run of a resumed study (or a helper worker) trained. The reference run (the
seed's configuration, drawn dashed for contrast) rides in the sweep's first batch; the child
trains it only where no batch carried it. Where the best trial has per-tensor statistics (an
objective of several parameter tensors), its update ratio per tensor is a sixth plot.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps.parallel.threads import AUXILIARY, use_threads
from sweeps.study.sweep import Rider, SweepListener, TrialOutcome
from sweeps.training.hparams import Hyperparams

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient

    from objectives import Objective
    from sweeps.study.sweep import Sweep
    from sweeps.training.stats import EpochStats

__all__ = ["REFERENCE", "BestCurves", "SweepPlots", "write_report"]

REFERENCE = Hyperparams("sgd", 0.01)  # the seed's configuration, drawn dashed for contrast


class BestCurves(SweepListener):
    """The statistics of the ``keep`` best completed trials by the study's value, by run id."""

    def __init__(self, keep: int = 5, maximize: bool = False) -> None:
        self.keep = keep
        self.maximize = maximize
        self.histories: dict[str, EpochStats] = {}
        self._rank: dict[str, float] = {}  # lower is better

    def trial_done(self, outcome: TrialOutcome) -> None:
        if outcome.value is None:
            return
        self.histories[outcome.run_id] = outcome.result.history
        self._rank[outcome.run_id] = -outcome.value if self.maximize else outcome.value
        for worst in sorted(self._rank, key=self._rank.__getitem__)[self.keep:]:
            del self.histories[worst], self._rank[worst]


class SweepPlots:
    """A child process started with the sweep, torch in it on one thread. While the sweep
    trains, it imports matplotlib on the other core; at the end only drawing is left."""

    def __init__(self, objective_name: str, objective_args: dict[str, Any], epochs: int,
                 device: str = "cpu", precision: str = "fp32") -> None:
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context,
                                         initializer=use_threads, initargs=(AUXILIARY,))
        args = {k: str(v) for k, v in objective_args.items()}
        self._objective = (objective_name, args, epochs, device, precision)
        self._pool.submit(_warm_up)
        self.curves = BestCurves()
        self.reference = Rider(REFERENCE)

    def attach(self, sweep: Sweep) -> None:
        """Keep the sweep's best curves, and train the reference run in its next batch."""
        self.curves.maximize = sweep.metric.maximize
        sweep.listeners.append(self.curves)
        sweep.riders.append(self.reference)

    def write(self, study: optuna.Study, storage_url: str, client: MlflowClient,
              out_dir: str | Path, *, top: int = 5) -> list[Path]:
        """Write the sweep plots into ``out_dir``: loss and update-ratio curves of the
        ``top`` trials and of the reference run, final loss against lr, the optimisation
        history, the parameter importances, and the best trial's update ratio per tensor
        where it has per-tensor statistics."""
        return [Path(p) for p in self.submit(study, storage_url, client, out_dir,
                                             top=top).result()]

    def submit(self, study: optuna.Study, storage_url: str, client: MlflowClient,
               out_dir: str | Path, *, top: int = 5) -> Future[list[str]]:
        """``write`` without waiting: the child draws while the caller does other work."""
        from sweeps.study.results import stored_metric
        from tracking.plots import histories_by_run, tensor_histories, top_run_ids

        metric = stored_metric(study).name
        known = self.curves.histories
        labelled = top_run_ids(study, top)
        # Curves the sweep did not keep are read here: in the child, MLflow's store would
        # be loaded into a process that otherwise never opens it.
        missing = {label: run for label, run in labelled.items() if run not in known}
        read: dict[str, Any] = (histories_by_run(client, missing, (metric, "update_ratio"))
                                if missing else {})
        best = next(iter(labelled.items()), None)
        if best is not None and best[0] in read:  # its per-tensor curves, for their plot
            read[best[0]].update(tensor_histories(client, best[1]))
        curves = {label: known.get(run) or read[label] for label, run in labelled.items()}
        label = f"reference: {REFERENCE.optimizer} lr={REFERENCE.lr:g}"
        return self._pool.submit(_draw, storage_url, study.study_name, curves,
                                 {label: self.reference.history}, self._objective,
                                 str(out_dir))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def write_report(study: optuna.Study, storage_url: str, client: MlflowClient,
                 objective: Objective, epochs: int, out_dir: str | Path, *, top: int = 5,
                 device: str = "cpu", precision: str = "fp32") -> list[Path]:
    """``SweepPlots.write`` in one call (for a study whose sweep has ended)."""
    plots = SweepPlots(objective.name, objective.arguments(), epochs, device, precision)
    try:
        return plots.write(study, storage_url, client, out_dir, top=top)
    finally:
        plots.close()


def _reference(name: str, args: dict[str, str], epochs: int, device: str,
               precision: str = "fp32") -> EpochStats:
    """The reference run's statistics, trained in the child (when no batch carried it), at
    the sweep's precision."""
    from objectives import build
    from sweeps.training.loop import train
    from sweeps.training.precision import at_precision

    objective = at_precision(build(name, args, from_file=True), precision)
    return train(objective, REFERENCE, epochs, device=device).history


def _warm_up() -> None:
    """Pay drawing's first-use costs while the sweep still trains: the imports (Optuna's
    importances bring in scikit-learn's forests), and matplotlib's fonts and PNG renderer,
    loaded by the first figure saved."""
    import io

    import numpy as np
    import optuna.importance  # noqa: F401

    from sweeps.study.results import opened_study  # noqa: F401
    from tracking.plots import Curve, loss_curves

    line = Curve(np.arange(2.0), np.ones(2))
    figure = loss_curves({"warm-up": {"loss": line}})
    figure.savefig(io.BytesIO(), format="png")


def _draw(storage_url: str, study_name: str, curves: dict[str, Any],
          reference: dict[str, EpochStats | None],
          objective: tuple[str, dict[str, str], int, str, str], out_dir: str) -> list[str]:
    """In the child: train the reference if not given, draw."""
    import optuna

    from sweeps.optim.optimizers import OPTIMIZERS
    from sweeps.study.results import opened_study, stored_goals, trials_frame
    from tracking.plots import write_sweep_plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trained = {k: v if v is not None else _reference(*objective) for k, v in reference.items()}
    best = next(iter(curves.items()), None)  # top_run_ids: best first
    with opened_study(storage_url, study_name) as study:
        goals = stored_goals(study)
        return [str(p) for p in write_sweep_plots(
            study, curves, trained, out_dir, trials_frame(study), tuple(OPTIMIZERS),
            tensors=best, metric=goals.primary.name,
            metrics=tuple(zip(goals.names, goals.directions, strict=True)))]
