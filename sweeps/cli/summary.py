"""What ``sweeps.run`` prints at the end: the top trials with their verdicts, the commands to
go on with, and links to the trials side by side in the MLflow UI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from sweeps.study.config import SweepConfig

__all__ = ["summary", "sweep_summary"]


def sweep_summary(study: optuna.Study, config: SweepConfig, experiment_id: str,
                  top: int = 5) -> str:
    from sweeps.storage.backends import DEFAULT_STORAGE, redact
    from sweeps.study.results import trials_frame

    frame = trials_frame(study)
    where = f"--study {study.study_name}"
    if config.storage != DEFAULT_STORAGE:
        where += f" --storage {redact(config.storage)}"
    commands = [f"python -m sweeps.compare {where}",
                f"python -m sweeps.export {where} --out best.json",
                "python -m sweeps.train --params best.json"]
    return summary(frame, top, commands, _links(frame, config.tracking_uri, experiment_id, top))


def summary(frame: Any, top: int, commands: list[str], links: dict[str, str]) -> str:
    """The top trials of ``frame`` with their verdicts, then ``commands`` and ``links``."""
    columns = ["trial", "state", "verdict", "optimizer", "lr", "scheduler", "final_loss",
               "best_loss", "epochs_run"]
    finished = frame[frame["state"].isin(["COMPLETE", "PRUNED", "FAIL"])]
    table = finished.sort_values("final_loss", na_position="last").head(top)[columns]
    lines = [f"top {len(table)} of {len(finished)} trials:",
             table.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
    if commands:
        lines += ["", "next:"] + [f"  {c}" for c in commands]
    if links:
        lines += ["", "compare in the MLflow UI (start it with: python -m tracking.ui):"]
        lines += [f"  {name}: {url}" for name, url in links.items()]
    return "\n".join(lines)


def _links(frame: Any, tracking_uri: str, experiment_id: str, top: int) -> dict[str, str]:
    """MLflow UI links to the top trials side by side (http tracking: that server)."""
    from tracking.links import DEFAULT_BASE, sweep_links

    base = tracking_uri if tracking_uri.startswith("http") else DEFAULT_BASE
    best = frame[frame["state"] == "COMPLETE"].sort_values("final_loss").head(top)
    run_ids = [r for r in best["mlflow_run_id"] if isinstance(r, str)]
    return sweep_links(base, experiment_id, run_ids) if run_ids else {}
