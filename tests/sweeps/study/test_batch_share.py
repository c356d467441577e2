"""How many trials a worker starts at once: its share of the unfinished ones, so that with
``--workers N`` no worker waits while another holds trials it could run."""

from __future__ import annotations

import optuna
import pytest

from sweeps.study.config import SweepConfig
from sweeps.study.sweep import Sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sweep(study: optuna.Study, **config: int) -> Sweep:
    # only the study and the config take part in choosing the batch size
    return Sweep(SweepConfig(**config), None, 10, "cpu", study, None,  # type: ignore[arg-type]
                 None, None)  # type: ignore[arg-type]


def _finish(study: optuna.Study, n: int) -> None:
    for _ in range(n):
        study.tell(study.ask(), 1.0)


@pytest.mark.parametrize(("n_trials", "workers", "batch", "expected"), [
    (50, 1, 25, 25),  # one worker: a whole batch
    (12, 1, 25, 12),
    (12, 2, 25, 6),  # two workers: half of the unfinished trials each, not all in one batch
    (50, 2, 25, 25),
    (13, 2, 25, 7),
    (12, 3, 2, 2),  # never more than a batch
])
def test_a_new_study_is_shared_among_the_workers(n_trials: int, workers: int, batch: int,
                                                 expected: int) -> None:
    study = optuna.create_study()
    sweep = _sweep(study, n_trials=n_trials, workers=workers, batch=batch)
    assert sweep._next_batch_size() == expected


def test_the_second_worker_takes_what_the_first_left() -> None:
    study = optuna.create_study()
    sweep = _sweep(study, n_trials=12, workers=2, batch=25)
    for _ in range(6):
        study.ask()  # the first worker's batch, running
    assert sweep._next_batch_size() == 6
    for _ in range(6):
        study.ask()
    assert sweep._next_batch_size() == 0  # every unfinished trial is running


def test_finished_trials_shrink_the_share() -> None:
    study = optuna.create_study()
    _finish(study, 8)
    sweep = _sweep(study, n_trials=12, workers=2, batch=25)
    assert sweep._next_batch_size() == 2
