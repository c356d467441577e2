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

    from sweeps.study.goals import Goals
    from sweeps.study.metric import StudyMetric
    from sweeps.training.loop import TrainResult

__all__ = ["FORMAT", "INTERRUPTED_ATTR", "RUN_ID_ATTR", "SETTINGS_ATTR", "STACK_ATTR",
           "best_documents", "counted_trials", "load_study", "outcome_attrs", "stack_of",
           "stored_goals", "stored_metric", "trials_frame", "write_json"]

# Trial and study attributes the sweep writes (stored data: the names do not change).
INTERRUPTED_ATTR = "interrupted"  # killed, signalled or surplus: counted against nothing
RUN_ID_ATTR = "mlflow_run_id"  # the trial's tracked run
STACK_ATTR = "stack"  # the rows of the stack the trial trained in (sweeps.batched.replay)
SETTINGS_ATTR = "lrsweep_settings"  # the study's fixed settings, compared on resume
VIOLATION_ATTR = "violation"  # a trial's largest constraint excess (> 0: infeasible)

FORMAT = "lrsweep.best/1"  # the exported document's format tag
COLUMNS = ["trial", "state", "verdict", "optimizer", "lr", "scheduler", "value", "final_loss",
           "best_loss", "epochs_run", "mean_update_ratio"]


def counted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Finished trials that count towards the target (interrupted ones do not)."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False, states=states)
            if INTERRUPTED_ATTR not in t.user_attrs]


def stored_goals(study: optuna.Study) -> Goals:
    """What ``study`` optimises (a study from before the choice: the training loss)."""
    from sweeps.study.goals import Goals, parse_constraint
    from sweeps.study.metric import StudyMetric

    stored = study.user_attrs.get(SETTINGS_ATTR, {})
    default = StudyMetric()
    names, directions = stored.get("metric", default.name), stored.get("direction",
                                                                        default.direction)
    if isinstance(names, str):
        names, directions = [names], [directions]
    at = stored.get("metric_at", default.at)
    return Goals(tuple(StudyMetric(n, d, at) for n, d in zip(names, directions, strict=True)),
                 tuple(parse_constraint(c) for c in stored.get("constraints", [])))


def stored_metric(study: optuna.Study) -> StudyMetric:
    """The (first) metric ``study`` optimises."""
    return stored_goals(study).primary


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """``trial`` kept every constraint of its study (a study without any: always)."""
    violation = trial.user_attrs.get(VIOLATION_ATTR)
    return violation is None or violation <= 0


def front(study: optuna.Study, goals: Goals,
          trials: list[optuna.trial.FrozenTrial] | None = None) -> list[int]:
    """The numbers of the complete, feasible trials no other one dominates (the Pareto front
    of a study of several metrics; the best trial of one), best first in the first metric."""
    from sweeps.study.goals import pareto_front

    return pareto_front(goals, {t.number: t.values for t in candidates(study, trials)})


def candidates(study: optuna.Study, trials: list[optuna.trial.FrozenTrial] | None = None
               ) -> list[optuna.trial.FrozenTrial]:
    """The trials that may be chosen: complete, with finite values, feasible."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False) if trials is None else trials
    return [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
            and all(math.isfinite(v) for v in t.values) and feasible(t)]


def trial_value(trial: optuna.trial.FrozenTrial) -> float | None:
    """The study's metric for ``trial``: its value if complete, its last reported value if
    pruned, else None."""
    from optuna.trial import TrialState

    if trial.state == TrialState.COMPLETE:
        return trial.values[0] if trial.values else None
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
    """One row per trial: its state, verdict, hyperparameters and outcome; for a study of
    several metrics a column for each later one and ``pareto`` (on the front), with
    constraints ``feasible``; any test metrics it was scored on (``test_*``), and its wall
    time."""
    import pandas as pd

    goals = stored_goals(study)
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.user_attrs.get(INTERRUPTED_ATTR) != "surplus"]  # drawn past the target
    on_front = set(front(study, goals, trials)) if goals.multi else set()
    later = goals.names[1:]
    tests = sorted({k for t in trials for k in t.user_attrs if k.startswith("test_")})
    rows = []
    for t in trials:
        hp = t.user_attrs.get("hparams", {})
        state = "INTERRUPTED" if INTERRUPTED_ATTR in t.user_attrs else t.state.name
        values = t.values if state == "COMPLETE" and t.values else None
        row = {
            "trial": t.number, "state": state, "verdict": t.user_attrs.get("verdict"),
            "optimizer": hp.get("optimizer"), "lr": hp.get("lr"),
            "scheduler": hp.get("scheduler"), "value": trial_value(t),
            **{name: values[i] if values else None for i, name in enumerate(later, 1)},
            "final_loss": t.user_attrs.get("final_loss"),
            "best_loss": t.user_attrs.get("best_loss"),
            "epochs_run": t.user_attrs.get("epochs_run"),
            "mean_update_ratio": t.user_attrs.get("mean_update_ratio"),
            **{name: t.user_attrs.get(name) for name in tests},
            "trial_seconds": t.user_attrs.get("trial_seconds"),
            "failure": t.user_attrs.get("failure"),
            "mlflow_run_id": t.user_attrs.get(RUN_ID_ATTR),
        }
        if goals.multi:
            row["pareto"] = t.number in on_front
        if goals.constraints:
            row["feasible"] = (feasible(t) if VIOLATION_ATTR in t.user_attrs else None)
        rows.append(row)
    columns = [*COLUMNS[:7], *later, *COLUMNS[7:], *tests,
               *[c for c in ("trial_seconds",) if c not in later]]
    columns += ["pareto"] * goals.multi + ["feasible"] * bool(goals.constraints)
    return pd.DataFrame(rows, columns=[*columns, "failure", "mlflow_run_id"])


def shown_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of a ``trials_frame`` that a table shows (not the failure text or the
    run id)."""
    return [c for c in frame.columns if c not in ("failure", "mlflow_run_id")]


def best_documents(study: optuna.Study, top: int = 1,
                   trial: int | None = None) -> list[dict[str, Any]]:
    """The ``top`` best trials as self-contained documents: by the study's metric, or for a
    study of several metrics the trials of the Pareto front, in order of the first metric;
    infeasible trials never. ``trial``: that trial (complete) instead."""
    trials = study.get_trials(deepcopy=False)
    goals = stored_goals(study)
    chosen = candidates(study, trials)
    if not chosen:
        raise UsageError("study", study.study_name, "it has no completed trial to export yet")
    by_number = {t.number: t for t in trials}
    on_front = front(study, goals, chosen)
    if trial is not None:
        if trial not in {t.number for t in chosen}:
            best = "the Pareto front" if goals.multi else "the best"
            raise UsageError("trial", trial, "use a complete, feasible trial (" + best + ": "
                             + ", ".join(map(str, on_front[:20])) + ")")
        picked = [by_number[trial]]
    elif goals.multi:
        picked = [by_number[n] for n in on_front[:top]]
    else:
        sign = -1.0 if goals.primary.maximize else 1.0
        picked = sorted(chosen, key=lambda t: (sign * t.values[0], t.number))[:top]
    settings = study.user_attrs.get(SETTINGS_ATTR, {})
    docs = []
    for t in picked:
        doc = {
            "format": FORMAT,
            "study": study.study_name,
            "trial": t.number,
            "value": t.values[0],
            "metric": asdict(goals.primary),
        }
        if goals.multi:
            doc["values"] = dict(zip(goals.names, t.values, strict=True))
            doc["pareto_front"] = on_front
        docs.append({
            **doc,
            "objective": {"name": settings.get("objective"),
                          "args": settings.get("objective_args", {})},
            "epochs": settings.get("epochs"),
            "precision": settings.get("precision", "fp32"),  # older studies: fp32
            "seed": study.user_attrs.get("seed"),
            "device": t.user_attrs.get("device"),
            "params": t.user_attrs.get("hparams", {}),
            "stack": stack_of(t, by_number),
            "mlflow_run_id": t.user_attrs.get(RUN_ID_ATTR),
            "versions": versions(),
        })
    return docs


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
