"""The search space against real Optuna studies (in-memory storage): per-optimizer log-scale
learning rates, conditional sub-parameters, the grid, and every supported sampler."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from sweeps.optim.optimizers import OPTIMIZERS
from sweeps.optim.schedulers import SCHEDULERS
from sweeps.study.config import SweepConfig
from sweeps.study.samplers import SAMPLERS, build_sampler
from sweeps.study.space import GRID_LR_POINTS, SearchSpace
from sweeps.training.hparams import Hyperparams

EPOCHS = 200
ALL = SearchSpace(tuple(OPTIMIZERS), tuple(SCHEDULERS), EPOCHS)
# the sub-parameters each optimizer / scheduler searches (SPEC 7)
OPTIMIZER_SUBPARAMS = {
    "sgd": set(), "momentum": {"momentum"}, "nesterov": {"momentum"}, "adam": set(),
    "adamw": {"weight_decay"}, "rmsprop": {"momentum"}, "adagrad": set(),
}
SCHEDULER_SUBPARAMS = {
    "none": set(), "step": {"step_size", "step_gamma"}, "exponential": {"exp_gamma"},
    "cosine": set(), "onecycle": {"pct_start"},
    "plateau": {"plateau_factor", "plateau_patience"},
}
INTEGER_SUBPARAMS = {"step_size", "plateau_patience"}
# what the search samples each sub-parameter from, for a run of EPOCHS epochs (SPEC 7)
SUBPARAM_DISTRIBUTIONS = {
    "momentum": FloatDistribution(0.5, 0.99),
    "weight_decay": FloatDistribution(1e-6, 1e-1, log=True),
    "step_size": IntDistribution(10, 100),
    "step_gamma": FloatDistribution(0.1, 0.9),
    "exp_gamma": FloatDistribution(0.001 ** (1 / EPOCHS), 0.5 ** (1 / EPOCHS)),
    "pct_start": FloatDistribution(0.05, 0.5),
    "plateau_factor": FloatDistribution(0.1, 0.9),
    "plateau_patience": IntDistribution(2, 20),
}


@pytest.fixture(autouse=True)
def quiet_optuna() -> Iterator[None]:
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(verbosity)


def test_tables_cover_every_optimizer_and_scheduler() -> None:
    assert OPTIMIZER_SUBPARAMS.keys() == OPTIMIZERS.keys()
    assert SCHEDULER_SUBPARAMS.keys() == SCHEDULERS.keys()


def ask_for(space: SearchSpace, optimizer: str, scheduler: str) -> tuple[optuna.Trial,
                                                                          Hyperparams]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"optimizer": optimizer, "scheduler": scheduler})
    trial = study.ask()
    return trial, space.sample(trial)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_lr_is_sampled_per_optimizer_on_a_log_scale(optimizer: str) -> None:
    trial, hp = ask_for(ALL, optimizer, "none")
    low, high = OPTIMIZERS[optimizer].lr_range
    assert ALL.lr_range(optimizer) == (low, high)
    assert hp.optimizer == optimizer
    assert trial.params[f"lr_{optimizer}"] == hp.lr
    assert low <= hp.lr <= high
    assert trial.distributions[f"lr_{optimizer}"] == FloatDistribution(low, high, log=True)
    assert [n for n in trial.params if n.startswith("lr")] == [f"lr_{optimizer}"]


def test_sampled_lrs_stay_in_each_optimizers_range() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        hp = ALL.sample(trial)
        low, high = OPTIMIZERS[hp.optimizer].lr_range
        assert low <= hp.lr <= high, hp
        study.tell(trial, math.log10(hp.lr))
        seen.add(hp.optimizer)
    assert seen == set(OPTIMIZERS)


@pytest.mark.parametrize(("lr_min", "lr_max"), [(1e-2, 1.0), (None, 1.0), (1e-6, None)])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_lr_min_and_lr_max_override_the_defaults(optimizer: str, lr_min: float | None,
                                                 lr_max: float | None) -> None:
    space = SearchSpace((optimizer,), ("none",), EPOCHS, lr_min, lr_max)
    default_low, default_high = OPTIMIZERS[optimizer].lr_range
    low = default_low if lr_min is None else lr_min
    high = default_high if lr_max is None else lr_max
    assert space.lr_range(optimizer) == (low, high)
    trial, hp = ask_for(space, optimizer, "none")
    assert trial.distributions[f"lr_{optimizer}"] == FloatDistribution(low, high, log=True)
    assert low <= hp.lr <= high


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_sub_parameters_appear_exactly_where_searched(optimizer: str, scheduler: str) -> None:
    trial, hp = ask_for(ALL, optimizer, scheduler)
    searched = OPTIMIZER_SUBPARAMS[optimizer] | SCHEDULER_SUBPARAMS[scheduler]
    assert set(trial.params) == {"optimizer", "scheduler", f"lr_{optimizer}"} | searched
    assert (hp.optimizer, hp.scheduler) == (optimizer, scheduler)
    assert set(hp.options) == searched
    for name, value in hp.options.items():
        assert trial.distributions[name] == SUBPARAM_DISTRIBUTIONS[name], name
        assert value == trial.params[name]
        if name in INTEGER_SUBPARAMS:
            assert isinstance(trial.distributions[name], IntDistribution), name
            assert value == int(value), name


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("optimizer", ["nesterov", "adamw"])
def test_hyperparams_round_trip_through_their_flat_form(optimizer: str, scheduler: str) -> None:
    _, hp = ask_for(ALL, optimizer, scheduler)
    flat = hp.to_dict()
    assert flat["optimizer"] == optimizer and flat["lr"] == hp.lr
    assert flat["scheduler"] == scheduler
    assert Hyperparams.from_dict(flat) == hp
    assert Hyperparams.from_dict(json.loads(json.dumps(flat))) == hp


def test_hyperparams_from_dict_defaults_the_scheduler() -> None:
    assert Hyperparams.from_dict({"optimizer": "sgd", "lr": "0.5"}) == Hyperparams("sgd", 0.5)


def grid_points(space: SearchSpace, optimizer: str) -> np.ndarray:
    low, high = space.lr_range(optimizer)
    return np.logspace(math.log10(low), math.log10(high), GRID_LR_POINTS)


@pytest.mark.parametrize(("lr_min", "lr_max"), [(None, None), (1e-4, 1e2)])
def test_grid_enumerates_every_log_spaced_lr(lr_min: float | None,
                                             lr_max: float | None) -> None:
    space = SearchSpace(("sgd", "adam"), ("none", "cosine"), EPOCHS, lr_min, lr_max)
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(space.grid(), seed=0))
    size = len(space.optimizers) * len(space.schedulers) * GRID_LR_POINTS
    seen = set()
    for _ in range(size):  # running trials count as visited: no tell needed
        trial = study.ask()
        hp = space.sample(trial)
        assert set(trial.params) == {"optimizer", "scheduler", "lr_index"}
        assert hp.options == {}
        points = grid_points(space, hp.optimizer)
        index = trial.params["lr_index"]
        assert hp.lr == pytest.approx(points[index], rel=1e-12)
        seen.add((hp.optimizer, hp.scheduler, index))
    assert seen == {(o, s, i) for o in space.optimizers for s in space.schedulers
                    for i in range(GRID_LR_POINTS)}


def test_grid_lrs_span_the_range_end_to_end() -> None:
    space = SearchSpace(("momentum",), ("none",), EPOCHS)
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(space.grid(), seed=0))
    lrs = sorted(space.sample(study.ask()).lr for _ in range(GRID_LR_POINTS))
    low, high = OPTIMIZERS["momentum"].lr_range
    assert lrs[0] == pytest.approx(low, rel=1e-12)
    assert lrs[-1] == pytest.approx(high, rel=1e-12)
    ratios = np.array(lrs[1:]) / np.array(lrs[:-1])
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # evenly spaced in log


SAMPLER_CASES = list(SAMPLERS)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("sampler", SAMPLER_CASES)
def test_every_supported_sampler_drives_the_space(sampler: str) -> None:
    config = SweepConfig(sampler=sampler, seed=0).validated()
    study = optuna.create_study(sampler=build_sampler(config.sampler, config.seed, ALL))
    for _ in range(8):
        trial = study.ask()
        hp = ALL.sample(trial)
        assert hp.optimizer in ALL.optimizers and hp.scheduler in ALL.schedulers
        low, high = ALL.lr_range(hp.optimizer)
        assert low <= hp.lr * (1 + 1e-12) and hp.lr <= high * (1 + 1e-12)
        study.tell(trial, abs(math.log10(hp.lr)))
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 8


def test_a_grid_sweep_runs_to_its_last_grid_point(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Optuna's GridSampler calls study.stop() on its last point, which raises outside
    study.optimize; the sweep (ask/tell) must end cleanly there."""
    from sweeps.cli import run
    from sweeps.study.results import load_study

    monkeypatch.chdir(tmp_path)
    code = run.main(["--optimizers", "sgd", "--schedulers", "none", "--sampler", "grid",
                     "--n-trials", "20", "--epochs", "10", "--study", "g", "--quiet"])
    assert code == 0
    study = load_study("sqlite:///mlruns/optuna.db", "g")
    lrs = sorted(t.user_attrs["hparams"]["lr"] for t in study.trials)
    assert len(lrs) == GRID_LR_POINTS and len(set(lrs)) == GRID_LR_POINTS
