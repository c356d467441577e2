"""What ``sweeps.run`` prints at the end: the top trials with their verdicts, the commands to
go on with, and links to the trials side by side in the MLflow UI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from sweeps.study.config import SweepConfig
    from sweeps.study.goals import Goals

__all__ = ["ranked", "summary", "sweep_summary"]


def sweep_summary(study: optuna.Study, config: SweepConfig, experiment_id: str,
                  top: int = 5) -> str:
    from sweeps.storage.backends import DEFAULT_STORAGE, redact
    from sweeps.study.results import stored_goals, trials_frame

    frame = trials_frame(study)
    goals = stored_goals(study)
    where = f"--study {study.study_name}"
    if config.storage != DEFAULT_STORAGE:
        where += f" --storage {redact(config.storage)}"
    commands = [f"python -m sweeps.compare {where}",
                f"python -m sweeps.export {where} --out best.json",
                "python -m sweeps.train --params best.json"]
    links = _links(frame, goals, config.tracking_uri, experiment_id, top)
    return summary(frame, goals, top, commands, links)


def summary(frame: Any, goals: Goals, top: int, commands: list[str],
            links: dict[str, str]) -> str:
    """The top trials of ``frame`` by the study's metric with their verdicts (a study of
    several metrics: its Pareto front), then ``commands`` and ``links``."""
    metric = goals.primary
    finished = frame[frame["state"].isin(["COMPLETE", "PRUNED", "FAIL"])]
    table = ranked(finished, goals)
    if goals.multi:
        table = table[table["pareto"] == True]  # noqa: E712 (a column of booleans)
    table = table.head(top)[columns(frame, goals)]
    table = table.rename(columns={"value": metric.name})
    if metric.name == "loss":  # the value is the final loss: one column says it
        table = table.drop(columns="loss")
    states = finished["state"].value_counts()
    trained = int(finished["epochs_run"].fillna(0).sum())
    lines = [f"trials: {states.get('COMPLETE', 0)} complete, {states.get('PRUNED', 0)} "
             f"pruned, {states.get('FAIL', 0)} failed; {trained:,} trial-epochs trained"]
    if goals.constraints:
        infeasible = int((finished["feasible"] == False).sum())  # noqa: E712 (None: unknown)
        lines.append(f"constraints: {', '.join(map(str, goals.constraints))} "
                     f"({infeasible} infeasible trials, never chosen)")
    if goals.multi:
        each = ", ".join(f"{m.name} ({m.direction})" for m in goals.metrics)
        lines.append(f"Pareto front, {len(table)} of {len(finished)} trials, at the "
                     f"{metric.at} epoch: {each}:")
    else:
        lines.append(f"top {len(table)} of {len(finished)} trials by {metric.name} at the "
                     f"{metric.at} epoch ({metric.direction}):")
    lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if commands:
        lines += ["", "next:"] + [f"  {c}" for c in commands]
    if links:
        lines += ["", "compare in the MLflow UI (start it with: python -m sweeps.ui):"]
        lines += [f"  {name}: {url}" for name, url in links.items()]
    return "\n".join(lines)


def columns(frame: Any, goals: Goals) -> list[str]:
    """The columns a summary shows: the trial, its configuration, its values of the study's
    metrics, its loss, epochs and test scores."""
    tests = [c for c in frame.columns if c.startswith("test_")]
    return ["trial", "state", "verdict", "optimizer", "lr", "scheduler", "value",
            *goals.names[1:], "final_loss", "epochs_run", *tests]


def ranked(frame: Any, goals: Goals) -> Any:
    """The rows of ``frame`` best first: feasible before infeasible, a Pareto front (several
    metrics) before the rest, then by the study's (first) metric; trials without a value
    last."""
    keys = {"_infeasible": frame["feasible"] == False if "feasible" in frame  # noqa: E712
            else False,
            "_off_front": frame["pareto"] != True if "pareto" in frame else False}  # noqa: E712
    order = frame.assign(**keys).sort_values(
        [*keys, "value"], ascending=[True, True, not goals.primary.maximize],
        na_position="last", kind="stable")
    return order.drop(columns=list(keys))


def _links(frame: Any, goals: Goals, tracking_uri: str, experiment_id: str,
           top: int) -> dict[str, str]:
    """MLflow UI links to the top trials side by side (http tracking: that server)."""
    from tracking.links import DEFAULT_BASE, sweep_links

    base = tracking_uri if tracking_uri.startswith("http") else DEFAULT_BASE
    best = ranked(frame[frame["state"] == "COMPLETE"], goals).head(top)
    run_ids = [r for r in best["mlflow_run_id"] if isinstance(r, str)]
    return sweep_links(base, experiment_id, run_ids) if run_ids else {}
