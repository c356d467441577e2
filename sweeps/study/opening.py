"""Create or resume a study: its fixed settings, sampler, pruner and search space.

The learning-rate intervals of the space come from the first of (``lr_source``):

1. ``user``: ``--lr-min``/``--lr-max`` (either bound; the other as below);
2. ``auto``: ``--lr-range auto``, an LR range test per optimizer (``auto_space``);
3. ``objective``: the intervals the objective declares (its optional ``lr_ranges``);
4. for an objective that declares none: ``auto`` (full batch or mini-batch) unless
   ``--lr-range fixed`` is given, else ``default``, the fixed ones of ``sweeps.optim``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sweeps.errors import UsageError
from sweeps.study.results import SETTINGS_ATTR, stored_goals

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

    from objectives import Objective
    from sweeps.diagnostics.range_test import RangeTestResult
    from sweeps.study.config import SweepConfig
    from sweeps.study.goals import Goals
    from sweeps.study.space import SearchSpace

__all__ = ["LR_RANGES_ATTR", "auto_space", "declared_lr_ranges", "fixed_settings",
           "log_intervals", "lr_source", "open_study", "search_space"]

log = logging.getLogger(__name__)

LR_RANGES_ATTR = "lr_ranges"  # --lr-range auto: the intervals, fixed at the first run


def fixed_settings(objective: Objective, epochs: int, goals: Goals,
                   precision: str = "fp32") -> dict[str, Any]:
    """What a study is created with and resumed only with."""
    return {"objective": objective.name, "objective_args": objective.arguments(),
            "epochs": epochs, **goals.settings(), "precision": precision}


def declared_lr_ranges(objective: Objective) -> dict[str, tuple[float, float]]:
    """The intervals ``objective`` declares (its optional ``lr_ranges``: optimizer name ->
    (low, high)), checked; empty if it declares none."""
    from sweeps.optim.optimizers import OPTIMIZERS

    field = f"lr_ranges of objective {objective.name}"
    ranges: dict[str, tuple[float, float]] = {}
    for name, bounds in dict(getattr(objective, "lr_ranges", None) or {}).items():
        if name not in OPTIMIZERS:
            raise UsageError(field, name, f"use optimizer names: {', '.join(OPTIMIZERS)}")
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            low = high = 0.0
        if not 0 < low < high:
            raise UsageError(field, f"{name}: {bounds}", "use (low, high), 0 < low < high")
        ranges[name] = (low, high)
    return ranges


def lr_source(config: SweepConfig, objective: Objective | None) -> str:
    """Where the space's lr intervals come from: user, auto, objective or default."""
    if config.lr_min or config.lr_max:
        return "user"
    if config.lr_range == "auto":
        return "auto"
    if objective is not None and declared_lr_ranges(objective):
        return "objective"
    if config.lr_range is None and objective is not None:
        return "auto"
    return "default"


def search_space(config: SweepConfig, epochs: int,
                 objective: Objective | None = None) -> SearchSpace:
    """The space ``config`` searches for ``objective``, checked; for ``lr_source`` auto, the
    default intervals until ``auto_space`` gives the range test's."""
    from sweeps.study.space import SearchSpace

    source = lr_source(config, objective)
    declared = None if objective is None or source == "auto" else declared_lr_ranges(objective)
    fixed = {k: float(v) for k, v in (
        ("weight_decay", config.weight_decay), ("grad_clip", config.grad_clip),
        ("beta1", config.adam_beta1), ("beta2", config.adam_beta2), ("eps", config.adam_eps))
        if v is not None}
    return SearchSpace(config.optimizers, config.schedulers, epochs, config.lr_min,
                       config.lr_max, declared or None, source, fixed,
                       config.weight_decay_range).validated()


def log_intervals(space: SearchSpace) -> None:
    """One INFO line: where the lr intervals come from, and each optimizer's."""
    where = {"user": "--lr-min/--lr-max", "auto": "an LR range test per optimizer",
             "objective": "the objective", "default": "the defaults"}[space.lr_source]
    intervals = []
    for name in space.optimizers:
        low, high = space.lr_range(name)
        intervals.append(f"{name} {low:.3g}..{high:.3g}")
    log.info("lr intervals from %s: %s", where, ", ".join(intervals))


def open_study(config: SweepConfig, objective: Objective, epochs: int, goals: Goals,
               space: SearchSpace, storage: BaseStorage) -> optuna.Study:
    """Create the study, or load it and check that its fixed settings match. Several
    metrics make a multi-objective study; Optuna does not prune those (``Trial.report``
    refuses them), so only the stalled-trial watch stops their trials early."""
    import optuna

    from sweeps.storage.backends import dispose_engine
    from sweeps.study.pruners import build_pruner
    from sweeps.study.samplers import build_sampler

    settings = fixed_settings(objective, epochs, goals, config.precision)
    study = optuna.create_study(
        storage=storage, study_name=config.study_name, directions=list(goals.directions),
        sampler=build_sampler(config.sampler, config.seed, space),
        pruner=build_pruner(config.pruner, epochs, objective), load_if_exists=True,
    )
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
        return study
    # older studies: the defaults
    stored = {**stored_goals(study).settings(), "precision": "fp32", **stored}
    if stored != settings:
        key = next(k for k in settings if stored.get(k) != settings.get(k))
        dispose_engine(storage)  # a refused resume leaves nothing open behind
        raise UsageError(
            key.replace("_", "-"), settings[key],
            f"study {config.study_name!r} was created with {key}={stored.get(key)!r}; "
            "use the same value to resume, or another --study",
        )
    return study


def auto_space(study: optuna.Study, space: SearchSpace, objective: Objective, device: str,
               enqueue: bool) -> tuple[SearchSpace, dict[str, RangeTestResult]]:
    """The space with range-test intervals (``--lr-range auto``), and the range tests run
    now: the intervals are stored with the study, computed where missing; with ``enqueue``,
    a new study's first trials are the suggested learning rates."""
    from dataclasses import replace

    from sweeps.diagnostics.auto_range import auto_lr_ranges

    ranges = {k: (float(v[0]), float(v[1]))
              for k, v in study.user_attrs.get(LR_RANGES_ATTR, {}).items()}
    missing = tuple(o for o in space.optimizers if o not in ranges)
    tests: dict[str, RangeTestResult] = {}
    if missing:
        found = auto_lr_ranges(objective, missing, device=device)
        ranges.update(found.ranges)
        tests = dict(found.tests)
        study.set_user_attr(LR_RANGES_ATTR, {k: list(v) for k, v in ranges.items()})
        if enqueue and not study.trials:  # a new study starts at the suggestions
            for name, lr in found.suggested.items():
                study.enqueue_trial({"optimizer": name, f"lr_{name}": lr},
                                    skip_if_exists=True)
    return replace(space, lr_ranges=ranges), tests
