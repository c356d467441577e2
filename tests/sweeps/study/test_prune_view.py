"""``PruneView`` answers the pruner's question for a batch from one read of the study, and
its answers are the live study's."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweeps.study.prune_view import PruneView


def _study(tmp_path: Path, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", pruner=pruner)
    for k in range(6):  # finished trials with intermediate values 0..5 at every step
        trial = study.ask()
        for step in range(0, 40, 10):
            trial.report(float(k) + step / 100, step)
        study.tell(trial, float(k))
    return study


@pytest.mark.parametrize("pruner", [optuna.pruners.MedianPruner(n_startup_trials=2),
                                    optuna.pruners.PercentilePruner(25.0, n_startup_trials=2)],
                         ids=["median", "percentile"])
def test_the_view_answers_as_the_live_study_with_one_read_per_step(
        tmp_path: Path, pruner: optuna.pruners.BasePruner) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(tmp_path, pruner)
    batch = [study.ask() for _ in range(8)]
    view = PruneView(study)
    reported: list[dict[int, float]] = [{} for _ in batch]
    answers = []
    for step in (10, 20):
        for i, trial in enumerate(batch):
            value = i * 0.8  # some above the median of the finished trials, some below
            trial.report(value, step)
            reported[i][step] = value
            answers.append((view.should_prune(trial, reported[i]), trial.should_prune()))
    assert view.reads == 2  # one read per check step, not one per trial
    assert [mine for mine, _ in answers] == [live for _, live in answers]
    assert {mine for mine, _ in answers} == {True, False}  # the cases differ


def test_a_trial_the_read_missed_is_asked_of_the_live_study(tmp_path: Path) -> None:
    study = _study(tmp_path, optuna.pruners.MedianPruner(n_startup_trials=2))
    view = PruneView(study)
    first = study.ask()
    first.report(0.0, 10)
    assert view.should_prune(first, {10: 0.0}) is False
    late = study.ask()  # asked after the read of step 10
    late.report(100.0, 10)
    assert view.should_prune(late, {10: 100.0}) is True
