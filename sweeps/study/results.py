"""What a study holds of its trials: the attributes a sweep writes, the trials that count,
the trials as a table, and the exported JSON document of its best trials."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps.errors import UsageError
from sweeps.storage.backends import dispose_engine

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from sweeps.study.metric import StudyMetric
    from sweeps.training.loop import TrainResult

__all__ = ["FORMAT", "INTERRUPTED_ATTR", "RUN_ID_ATTR", "SETTINGS_ATTR", "STACK_ATTR",
           "best_documents", "counted_trials", "load_study", "outcome_attrs", "stack_of",
           "stored_metric", "trials_frame", "write_json"]

# Trial and study attributes the sweep writes (stored data: the names do not change).
INTERRUPTED_ATTR = "interrupted"  # killed, signalled or surplus: counted against nothing
RUN_ID_ATTR = "mlflow_run_id"  # the trial's tracked run
STACK_ATTR = "stack"  # the rows of the stack the trial trained in (sweeps.batched.replay)
SETTINGS_ATTR = "lrsweep_settings"  # the study's fixed settings, compared on resume

FORMAT = "lrsweep.best/1"  # the exported document's format tag
COLUMNS = ["trial", "state", "verdict", "optimizer", "lr", "scheduler", "value", "final_loss",
           "best_loss", "epochs_run", "mean_update_ratio"]


def counted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Finished trials that count towards the target (interrupted ones do not)."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False, states=states)
            if INTERRUPTED_ATTR not in t.user_attrs]


def stored_metric(study: optuna.Study) -> StudyMetric:
    """The metric ``study`` optimises (a study from before the choice: the training loss)."""
    from sweeps.study.metric import StudyMetric

    stored = study.user_attrs.get(SETTINGS_ATTR, {})
    default = StudyMetric()
    return StudyMetric(stored.get("metric", default.name),
                       stored.get("direction", default.direction),
                       stored.get("metric_at", default.at))


def trial_value(trial: optuna.trial.FrozenTrial) -> float | None:
    """The study's metric for ``trial``: its value if complete, its last reported value if
    pruned, else None."""
    from optuna.trial import TrialState

    if trial.state == TrialState.COMPLETE:
        return trial.value
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


def outcome_attrs(result: TrainResult) -> dict[str, Any]:
    """What a trial keeps in Optuna beside its value, for comparison and export."""
    import numpy as np

    ratio = result.history.update_ratio
    finite = ratio[np.isfinite(ratio)]
    attrs: dict[str, Any] = {
        "final_loss": result.final_loss if math.isfinite(result.final_loss) else None,
        "best_loss": result.best_loss if math.isfinite(result.best_loss) else None,
        "epochs_run": result.epochs_run,
        "mean_update_ratio": float(finite.mean()) if len(finite) else None,
    }
    if result.verdict is not None:
        attrs["verdict"] = result.verdict.name
        attrs["verdict_reason"] = result.verdict.reason
    if result.failure is not None:
        attrs["failure"] = result.failure
        attrs["failure_epoch"] = result.failure_epoch
    return attrs


def load_study(storage_url: str, name: str) -> optuna.Study:
    """An existing study; ``UsageError`` (and nothing created) if it does not exist."""
    return _load(storage_url, name)[0]


@contextlib.contextmanager
def opened_study(storage_url: str, name: str) -> Iterator[optuna.Study]:
    """``load_study`` for a command that only reads: its database connections are closed at
    the end, so SQLite's write-ahead-log files go too and the command leaves nothing."""
    study, storage = _load(storage_url, name)
    try:
        yield study
    finally:
        dispose_engine(storage)


def _load(storage_url: str, name: str) -> tuple[optuna.Study, Any]:
    import optuna

    from sweeps.storage.backends import local_path, open_storage, redact

    path = local_path(storage_url)
    if path is not None:
        if not path.exists():
            raise UsageError("storage", storage_url, f"no such file, so no study {name!r}; "
                                                     "run a sweep first")
    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage), storage
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        listed = ", ".join(names) if names else "none"
        dispose_engine(storage)
        raise UsageError("study", name, f"use an existing study in {redact(storage_url)} "
                                        f"({listed})") from None


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: its state, verdict, hyperparameters and outcome."""
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(INTERRUPTED_ATTR) == "surplus":  # drawn after the target was met
            continue
        hp = t.user_attrs.get("hparams", {})
        state = t.state.name
        if INTERRUPTED_ATTR in t.user_attrs:
            state = "INTERRUPTED"
        rows.append({
            "trial": t.number, "state": state, "verdict": t.user_attrs.get("verdict"),
            "optimizer": hp.get("optimizer"), "lr": hp.get("lr"),
            "scheduler": hp.get("scheduler"), "value": trial_value(t),
            "final_loss": t.user_attrs.get("final_loss"),
            "best_loss": t.user_attrs.get("best_loss"),
            "epochs_run": t.user_attrs.get("epochs_run"),
            "mean_update_ratio": t.user_attrs.get("mean_update_ratio"),
            "failure": t.user_attrs.get("failure"),
            "mlflow_run_id": t.user_attrs.get(RUN_ID_ATTR),
        })
    return pd.DataFrame(rows, columns=[*COLUMNS, "failure", "mlflow_run_id"])


def best_documents(study: optuna.Study, top: int = 1) -> list[dict[str, Any]]:
    """The ``top`` completed trials, best first, as self-contained documents."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE
                and t.value is not None and math.isfinite(t.value)]
    if not complete:
        raise UsageError("study", study.study_name, "it has no completed trial to export yet")
    metric = stored_metric(study)
    complete.sort(key=lambda t: (-t.value if metric.maximize else t.value, t.number))
    settings = study.user_attrs.get(SETTINGS_ATTR, {})
    by_number = {t.number: t for t in trials}
    return [{
        "format": FORMAT,
        "study": study.study_name,
        "trial": t.number,
        "value": t.value,
        "metric": asdict(metric),
        "objective": {"name": settings.get("objective"),
                      "args": settings.get("objective_args", {})},
        "epochs": settings.get("epochs"),
        "seed": study.user_attrs.get("seed"),
        "device": t.user_attrs.get("device"),
        "params": t.user_attrs.get("hparams", {}),
        "stack": stack_of(t, by_number),
        "mlflow_run_id": t.user_attrs.get(RUN_ID_ATTR),
        "versions": versions(),
    } for t in complete[:top]]


def stack_of(trial: optuna.trial.FrozenTrial,
             by_number: dict[int, optuna.trial.FrozenTrial]) -> dict[str, Any] | None:
    """How ``trial`` ran, for ``sweeps.train`` to replay it: its stack's rows with their
    configurations and the epochs after which the pruned ones left (``StackRecord.to_dict``);
    None where it ran alone, outside a stack. ``by_number``: the study's trials."""
    from optuna.trial import TrialState

    from sweeps.batched.replay import StackRecord
    from sweeps.training.hparams import Hyperparams

    record = trial.user_attrs.get(STACK_ATTR)
    if not record:
        return None
    rows = []
    for row in record["rows"]:
        if "trial" not in row:  # a rider: ran to its end
            rows.append((Hyperparams.from_dict(row["params"]), None))
            continue
        other = by_number[row["trial"]]
        leave = other.user_attrs.get("epochs_run") if other.state == TrialState.PRUNED else None
        rows.append((Hyperparams.from_dict(other.user_attrs["hparams"]), leave))
    mine = next(i for i, row in enumerate(record["rows"]) if row.get("trial") == trial.number)
    return StackRecord(tuple(rows), mine, record["threads"]).to_dict()


def versions() -> dict[str, str]:
    out = {}
    for package in ("lrsweep", "torch", "optuna", "mlflow", "numpy", "pandas"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: str, data: Any, *, force: bool) -> None:
    """Write ``data`` atomically (temp file + rename); refuse to overwrite unless ``force``."""
    target = Path(path)
    if target.exists() and not force:
        raise UsageError("out", path, "the file exists; use --force to overwrite it")
    if not target.parent.exists():
        raise UsageError("out", path, "use a path in an existing folder")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(dumps(data))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
