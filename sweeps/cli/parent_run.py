"""The study's MLflow parent run: created once, reattached to on resume, closed at the end with
the best value and parameters, ``best_params.json``, ``trials.csv`` and the plots."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps.errors import UsageError
from sweeps.study.results import best_documents, counted_trials, dumps, trials_frame, write_json

if TYPE_CHECKING:
    import optuna

    from sweeps.cli.sweep_plots import SweepPlots
    from sweeps.diagnostics.range_test import RangeTestResult
    from tracking.study_run import StudyTracker

__all__ = ["PARENT_ATTR", "ParentRun"]

log = logging.getLogger(__name__)

PARENT_ATTR = "mlflow_parent_run_id"  # study attribute: the parent run, for resumes


class ParentRun:
    """The parent run of ``study`` in ``tracker``'s experiment (the tracker's own)."""

    def __init__(self, tracker: StudyTracker, study: optuna.Study,
                 params: dict[str, Any], seed: int) -> None:
        self.tracker = tracker
        self.study = study
        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id is None:
            run_id = tracker.start_parent(study.study_name, params, {"role": "study"})
            study.set_user_attr(PARENT_ATTR, run_id)
            study.set_user_attr("seed", seed)
            study.set_user_attr("mlflow_experiment_id", tracker.experiment_id)
        else:
            tracker.resume_parent(run_id)
        self.run_id: str = run_id

    def tag(self, tags: dict[str, str]) -> None:
        """Set ``tags`` on the parent run, in one call."""
        from mlflow.entities import RunTag

        self.tracker.client.log_batch(self.run_id,
                                      tags=[RunTag(k, v) for k, v in tags.items()])

    def log_range_tests(self, tests: dict[str, RangeTestResult]) -> None:
        """Each range test's curve (PNG) and numbers (CSV), under ``lr_range/``."""
        from tracking.plots.range_test import plot_range_test

        with tempfile.TemporaryDirectory() as folder:
            for name, result in tests.items():
                plot_range_test(result, Path(folder) / f"{name}.png")
                result.to_frame().to_csv(Path(folder) / f"{name}.csv", index=False)
            self.tracker.client.log_artifacts(self.run_id, folder, "lr_range")

    def finish(self, status: str, *, storage_url: str, plots: SweepPlots | None = None,
               export: str | None = None) -> None:
        """Close the trials' runs, then the parent: the best trial's value, parameters and
        document (also written to ``export``), the trials table and the plots."""
        from mlflow.entities import Metric, RunTag

        from tracking.run_end import terminate

        client = self.tracker.client
        self.tracker.close()
        try:
            best: dict[str, Any] | None = best_documents(self.study)[0]
        except UsageError:
            best = None
        with tempfile.TemporaryDirectory() as folder:
            drawn = (plots.submit(self.study, storage_url, client, folder)
                     if plots is not None and best is not None else None)
            client.log_text(self.run_id, trials_frame(self.study).to_csv(index=False),
                            "trials.csv")
            if best is not None:
                client.log_text(self.run_id, dumps(best), "best_params.json")
                tags = {f"best.{key}": str(value) for key, value in best["params"].items()}
                tags["best.trial"] = str(best["trial"])
                metric = Metric("best_value", best["value"], int(time.time() * 1000),
                                len(counted_trials(self.study)))
                client.log_batch(self.run_id, metrics=[metric],
                                 tags=[RunTag(k, v) for k, v in tags.items()])
            if drawn is not None:  # drawn in the child meanwhile
                drawn.result()
                client.log_artifacts(self.run_id, folder, "plots")
        if best is not None:
            if export:
                write_json(export, best, force=True)
            log.info("best trial %d: %s=%.4g %s", best["trial"], best["metric"]["name"],
                     best["value"], best["params"])
        terminate(client, self.run_id, status)
