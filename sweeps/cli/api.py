"""The Python API: a sweep from a notebook or a program, the same as ``python -m sweeps.run``.

    from sweeps.api import sweep

    result = sweep(objective, n_trials=20, epochs=10, plots=False)
    result.best_params, result.best_value       # also: result.study, result.best (the export)

``objective`` is an objective object (``objectives.DatasetObjective`` and the like), a
registered name or ``pkg.module:attr``; every other keyword is a setting of the command line
(``sweeps.study.config.SweepConfig``: ``storage``, ``tracking_uri``, ``study``, ``pruner``,
``seed``, ``batch``, ``device``, ...), with the same defaults. A bad setting raises
``UsageError`` before anything is written. An objective object runs in this process only:
``workers`` above 1 needs a name the helper processes can build it from. An objective
object's ``name`` must load it back in a new process (``sweeps.train --params`` on the
export does): ``pkg.module:attr`` of the module attribute that holds it
(``name=f"{__name__}:objective"`` in that module), or a built-in objective's name; any other
is refused before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sweeps.errors import UsageError
from sweeps.study.config import NAME_PATTERN, NAME_RULE, SweepConfig, coerce

if TYPE_CHECKING:
    import optuna

    from objectives import Objective

__all__ = ["LOAD_BACK_RULE", "SweepResult", "sweep"]

# what an objective object's name must be (``objectives.loads_back``)
LOAD_BACK_RULE = ("use the import path that loads this object back in a new process, as "
                  "sweeps.train --params does: name=f\"{__name__}:objective\" in the module "
                  "that holds it as `objective` (a module, not __main__ or a notebook), or a "
                  "built-in objective's name")


@dataclass(frozen=True)
class SweepResult:
    """What a sweep left: its exit status as the command's (0: finished; 1: a store failed
    mid-sweep, resumable; 130 or 143: interrupted), the study, and its best complete trial as
    ``sweeps.export`` writes it (None while no trial is complete)."""

    status: int
    study: optuna.Study
    best: dict[str, Any] | None

    @property
    def best_params(self) -> dict[str, Any] | None:
        """The best trial's hyperparameters (optimizer, lr, scheduler, sub-parameters)."""
        return None if self.best is None else dict(self.best["params"])

    @property
    def best_value(self) -> float | None:
        """The best trial's value of the study's metric."""
        return None if self.best is None else float(self.best["value"])


def sweep(objective: Objective | str, **settings: Any) -> SweepResult:
    """Run or resume the sweep of ``objective`` with ``settings`` (see the module)."""
    import optuna

    from objectives import register
    from sweeps.cli.run import run_config
    from sweeps.storage.backends import open_storage
    from sweeps.study.results import best_documents

    known = {f.name for f in fields(SweepConfig)} - {"objective"}
    for key in settings:
        if key not in known:
            raise UsageError("setting", key, f"use one of {', '.join(sorted(known))}")
    settings = {key: coerce(key, value, key.replace("_", "-"))
                for key, value in settings.items() if value is not None}
    if isinstance(objective, str):
        name, given = objective, None
    else:
        name, given = _object_name(objective, settings.get("workers", 1)), objective
    config = SweepConfig(objective=name, **settings).validated()
    if given is not None:
        register(name, lambda: given)
    status = run_config(config)
    study = optuna.load_study(study_name=config.study_name, storage=open_storage(config.storage))
    try:
        best: dict[str, Any] | None = best_documents(study)[0]
    except UsageError:  # no complete trial yet
        best = None
    return SweepResult(status, study, best)


def _object_name(objective: Objective, workers: int) -> str:
    """The name an objective object runs under, or ``UsageError`` where it has none fit
    for a study, none that loads it back (``objectives.loads_back``), or where ``workers``
    helper processes would have to build it by name."""
    from objectives import loads_back

    name = getattr(objective, "name", None)
    if isinstance(name, str) and not loads_back(name, objective):
        raise UsageError("objective name", name, LOAD_BACK_RULE)
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name.replace(":", ".")):
        raise UsageError("objective name", name, NAME_RULE)
    if workers != 1:
        raise UsageError("workers", workers, "use 1 with an objective object (helper "
                         "processes build the objective from a registered name or "
                         "pkg.module:attr)")
    return name
