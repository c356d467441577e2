"""The default pruner: successive halving in which the rows of a stack compete in lockstep."""

from __future__ import annotations

import math

import optuna
import pytest

import objectives
from sweeps.batched import train_batch
from sweeps.study.halving import LockstepHalving, rung_epochs
from sweeps.study.metric import StudyMetric
from sweeps.study.prune_view import PruneView
from sweeps.study.pruners import build_pruner, first_rung
from sweeps.study.reporter import OptunaReporter
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train

LRS = [0.3, 0.01, 0.1, 0.001, 0.03, 0.003]  # Adam on a quadratic: larger is faster here
EPOCHS = 10


def test_rungs_grow_by_the_reduction_from_the_first() -> None:
    assert rung_epochs(1, 60, 3) == [1, 3, 9, 27]
    assert rung_epochs(2000, 10_000, 3) == [2000, 6000]
    assert rung_epochs(5, 5, 3) == []


def test_the_first_rung_is_the_objectives_warmup_else_a_fifth_of_the_run() -> None:
    class Declares:
        prune_warmup = 2

    assert first_rung(Declares(), 60) == 2
    assert first_rung(object(), 10_000) == 2000
    assert first_rung(object(), 3) == 1
    assert build_pruner("halving", 60, Declares()).rungs == [2, 6, 18, 54]  # type: ignore


def study() -> optuna.Study:
    return optuna.create_study(pruner=LockstepHalving(2, EPOCHS, 3),
                               sampler=optuna.samplers.RandomSampler(seed=0))


def reporters(trials: list[optuna.Trial], view: PruneView) -> list[tuple[OptunaReporter]]:
    return [(OptunaReporter(t, EPOCHS, StudyMetric(), view),) for t in trials]


def test_the_rows_of_a_stack_prune_each_other_at_a_rung() -> None:
    """Six rows reach the first rung (2 epochs) together: the best two go on, whichever row
    is asked first. At the next rung (6 epochs) two rows are fewer than the reduction (3):
    both complete."""
    objective = objectives.build("tests.toy_objectives:Quadratic")
    hps = [Hyperparams("adam", lr) for lr in LRS]
    live = study()
    trials = [live.ask() for _ in hps]
    results = train_batch(objective, hps, EPOCHS, chunk=1,
                          observers=reporters(trials, PruneView(live)))

    at_rung = [r.history.loss[1] for r in results]
    best_two = sorted(range(len(hps)), key=lambda i: at_rung[i])[:2]
    assert [r.status for r in results] == [
        "complete" if i in best_two else "pruned" for i in range(len(hps))]
    assert [r.epochs_run for r in results] == [
        EPOCHS if i in best_two else 2 for i in range(len(hps))]


def test_trials_one_at_a_time_compete_with_the_ones_before() -> None:
    """The same configurations one after another: a trial is judged against those that
    reached the rung before it, so the first two always go on (fewer than three reached it)
    and a later one goes on only among the best third so far."""
    objective = objectives.build("tests.toy_objectives:Quadratic")
    live = study()
    view = PruneView(live)
    statuses, values = [], []
    for lr in LRS:
        trial = live.ask()
        result = train(objective, Hyperparams("adam", lr), EPOCHS, chunk=1,
                       observers=reporters([trial], view)[0])
        live.tell(trial, result.final_loss if result.status == "complete" else None,
                  state=(optuna.trial.TrialState.COMPLETE if result.status == "complete"
                         else optuna.trial.TrialState.PRUNED))
        values.append(result.history.loss[1])
        keep = math.ceil(len(values) / 3)
        kept = len(values) < 3 or sorted(values).index(values[-1]) < keep
        statuses.append(result.status)
        assert (result.status == "complete") == kept, (lr, values)
    assert statuses[:2] == ["complete", "complete"]


def test_a_value_that_is_not_finite_loses_and_maximising_studies_keep_the_largest() -> None:
    pruner = LockstepHalving(1, 10, 2)
    for direction, values, pruned in [
            ("minimize", [1.0, 2.0, 3.0, float("nan")], [False, False, True, True]),
            ("maximize", [1.0, 2.0, 3.0, float("nan")], [True, False, False, True])]:
        live = optuna.create_study(direction=direction, pruner=pruner)
        trials = [live.ask() for _ in values]
        for trial, value in zip(trials, values):
            trial.report(value, step=0)
        assert [pruner.prune(live, live.trials[t.number]) for t in trials] == pruned


@pytest.mark.parametrize("reported,rung", [([0], 1), ([0, 1], None), ([0, 2], 3),
                                           ([0, 2, 5], None), ([0, 2, 5, 9], 9)])
def test_a_rung_is_judged_at_the_first_report_at_or_past_it(reported: list[int],
                                                            rung: int | None) -> None:
    assert LockstepHalving(1, 20, 3).rung_at(reported) == rung
