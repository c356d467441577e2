"""Create or resume a study: its fixed settings, sampler, pruner and search space."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sweeps.errors import UsageError
from sweeps.study.results import SETTINGS_ATTR, stored_metric

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

    from objectives import Objective
    from sweeps.diagnostics.range_test import RangeTestResult
    from sweeps.study.config import SweepConfig
    from sweeps.study.metric import StudyMetric
    from sweeps.study.space import SearchSpace

__all__ = ["LR_RANGES_ATTR", "auto_space", "fixed_settings", "open_study", "search_space"]

LR_RANGES_ATTR = "lr_ranges"  # --lr-range auto: the intervals, fixed at the first run


def fixed_settings(objective: Objective, epochs: int, metric: StudyMetric) -> dict[str, Any]:
    """What a study is created with and resumed only with."""
    return {"objective": objective.name, "objective_args": objective.arguments(),
            "epochs": epochs, **metric.settings()}


def search_space(config: SweepConfig, epochs: int) -> SearchSpace:
    """The space ``config`` searches (before any ``--lr-range auto`` intervals), checked."""
    from sweeps.study.space import SearchSpace

    return SearchSpace(config.optimizers, config.schedulers, epochs, config.lr_min,
                       config.lr_max).validated()


def open_study(config: SweepConfig, objective: Objective, epochs: int, metric: StudyMetric,
               space: SearchSpace, storage: BaseStorage) -> optuna.Study:
    """Create the study, or load it and check that its fixed settings match."""
    import optuna

    from sweeps.storage.backends import dispose_engine
    from sweeps.study.pruners import build_pruner
    from sweeps.study.samplers import build_sampler

    settings = fixed_settings(objective, epochs, metric)
    study = optuna.create_study(
        storage=storage, study_name=config.study_name, direction=metric.direction,
        sampler=build_sampler(config.sampler, config.seed, space),
        pruner=build_pruner(config.pruner, epochs), load_if_exists=True,
    )
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
        return study
    stored = {**stored_metric(study).settings(), **stored}  # older studies: the defaults
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
