"""What ``sweeps.run`` prints at the end: the top trials with their verdicts, the commands to
go on with, and links to the trials side by side in the MLflow UI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from sweeps.study.config import SweepConfig
    from sweeps.study.metric import StudyMetric

__all__ = ["ranked", "summary", "sweep_summary"]


def sweep_summary(study: optuna.Study, config: SweepConfig, experiment_id: str,
                  top: int = 5) -> str:
    from sweeps.storage.backends import DEFAULT_STORAGE, redact
    from sweeps.study.results import stored_metric, trials_frame

    frame = trials_frame(study)
    metric = stored_metric(study)
    where = f"--study {study.study_name}"
    if config.storage != DEFAULT_STORAGE:
        where += f" --storage {redact(config.storage)}"
    commands = [f"python -m sweeps.compare {where}",
                f"python -m sweeps.export {where} --out best.json",
                "python -m sweeps.train --params best.json"]
    links = _links(frame, metric, config.tracking_uri, experiment_id, top)
    return summary(frame, metric, top, commands, links)


def summary(frame: Any, metric: StudyMetric, top: int, commands: list[str],
            links: dict[str, str]) -> str:
    """The top trials of ``frame`` by ``metric`` with their verdicts, then ``commands`` and
    ``links``."""
    columns = ["trial", "state", "verdict", "optimizer", "lr", "scheduler", "value",
               "final_loss", "epochs_run"]
    finished = frame[frame["state"].isin(["COMPLETE", "PRUNED", "FAIL"])]
    table = ranked(finished, metric).head(top)[columns].rename(columns={"value": metric.name})
    if metric.name == "loss":  # the value is the final loss: one column says it
        table = table.drop(columns="loss")
    states = finished["state"].value_counts()
    trained = int(finished["epochs_run"].fillna(0).sum())
    lines = [f"trials: {states.get('COMPLETE', 0)} complete, {states.get('PRUNED', 0)} "
             f"pruned, {states.get('FAIL', 0)} failed; {trained:,} trial-epochs trained",
             f"top {len(table)} of {len(finished)} trials by {metric.name} at the "
             f"{metric.at} epoch ({metric.direction}):",
             table.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
    if commands:
        lines += ["", "next:"] + [f"  {c}" for c in commands]
    if links:
        lines += ["", "compare in the MLflow UI (start it with: python -m sweeps.ui):"]
        lines += [f"  {name}: {url}" for name, url in links.items()]
    return "\n".join(lines)


def ranked(frame: Any, metric: StudyMetric) -> Any:
    """The rows of ``frame`` best first by ``metric`` (trials without a value last)."""
    return frame.sort_values("value", ascending=not metric.maximize, na_position="last",
                             kind="stable")


def _links(frame: Any, metric: StudyMetric, tracking_uri: str, experiment_id: str,
           top: int) -> dict[str, str]:
    """MLflow UI links to the top trials side by side (http tracking: that server)."""
    from tracking.links import DEFAULT_BASE, sweep_links

    base = tracking_uri if tracking_uri.startswith("http") else DEFAULT_BASE
    best = ranked(frame[frame["state"] == "COMPLETE"], metric).head(top)
    run_ids = [r for r in best["mlflow_run_id"] if isinstance(r, str)]
    return sweep_links(base, experiment_id, run_ids) if run_ids else {}
