"""Where a sweep's learning-rate intervals come from: the user's --lr-min/--lr-max, then
--lr-range auto (a range test per optimizer), then the objective's declared ``lr_ranges``,
then (for an objective that declares none, full batch or mini-batch) the range test, or the
fixed defaults with --lr-range fixed; and that the study samples from the intervals chosen."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.distributions import FloatDistribution
from torch import nn

from objectives.dataset import DatasetObjective
from objectives.rebalance import Rebalance
from sweeps.cli import run
from sweeps.errors import UsageError
from sweeps.optim.optimizers import OPTIMIZERS
from sweeps.study.config import SweepConfig
from sweeps.study.opening import lr_source, search_space
from sweeps.study.results import load_study

try:  # tests/ as a plain folder (pytest puts it on sys.path) or as a package
    from minibatch_objectives import HELD_OUT, data, model, tiny
    from toy_objectives import Quadratic
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import HELD_OUT, data, model, tiny
    from tests.toy_objectives import Quadratic

DECLARED = {"sgd": (0.02, 0.5), "adam": (3e-4, 3e-2)}
EPOCHS = 3
SPEC = "tests.sweeps.study.test_lr_intervals:declared"


def declared(batch_size: int = 8) -> DatasetObjective:
    """``tiny``'s model and data with declared intervals for sgd and adam."""
    return DatasetObjective(model(), data(0), batch_size=batch_size,
                            loss_fn=nn.functional.cross_entropy,
                            validation=data(1, HELD_OUT), name=SPEC, default_epochs=EPOCHS,
                            arguments={"batch_size": batch_size}, lr_ranges=DECLARED)


@pytest.fixture(autouse=True)
def quiet_optuna() -> Iterator[None]:
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(verbosity)


# ------------------------------------------------------------------ the resolution order

OBJECTIVES = {"declared": declared, "minibatch": tiny, "rebalance": Rebalance,
              "full-batch": Quadratic}
USER = {"lr_min": 1e-3, "lr_max": 1.0}
# (config overrides, objective) -> source: user beats auto beats declared beats default
RESOLUTION = [
    (USER, "declared", "user"), (USER, "minibatch", "user"), (USER, "full-batch", "user"),
    ({"lr_max": 1.0}, "declared", "user"), ({"lr_min": 1e-4}, "minibatch", "user"),
    ({"lr_range": "auto"}, "declared", "auto"), ({"lr_range": "auto"}, "full-batch", "auto"),
    ({}, "declared", "objective"), ({"lr_range": "fixed"}, "declared", "objective"),
    ({}, "rebalance", "objective"),
    ({}, "minibatch", "auto"), ({"lr_range": "fixed"}, "minibatch", "default"),
    ({}, "full-batch", "auto"), ({"lr_range": "fixed"}, "full-batch", "default"),
]


@pytest.mark.parametrize(("overrides", "objective", "source"), RESOLUTION)
def test_the_intervals_come_from_the_first_source_that_gives_them(
        overrides: dict[str, object], objective: str, source: str) -> None:
    config = SweepConfig().with_overrides(overrides).validated()
    assert lr_source(config, OBJECTIVES[objective]()) == source
    assert search_space(config, EPOCHS, OBJECTIVES[objective]()).lr_source == source


def test_a_space_built_without_an_objective_keeps_the_user_or_default_intervals() -> None:
    assert lr_source(SweepConfig(), None) == "default"
    assert lr_source(SweepConfig(lr_max=2.0), None) == "user"
    space = search_space(SweepConfig(), EPOCHS)
    assert {n: space.lr_range(n) for n in OPTIMIZERS} == {n: s.lr_range
                                                           for n, s in OPTIMIZERS.items()}


def test_rebalance_declares_exactly_the_default_intervals() -> None:
    assert Rebalance().lr_ranges == {name: spec.lr_range for name, spec in OPTIMIZERS.items()}
    space = search_space(SweepConfig(), 10_000, Rebalance())
    assert space.lr_source == "objective"
    assert {n: space.lr_range(n) for n in OPTIMIZERS} == {n: s.lr_range
                                                           for n, s in OPTIMIZERS.items()}


@pytest.mark.parametrize(("overrides", "sgd", "adam"), [
    ({}, DECLARED["sgd"], DECLARED["adam"]),
    ({"lr_max": 0.1}, (0.02, 0.1), (3e-4, 0.1)),  # a user bound replaces that side only
    (USER, (1e-3, 1.0), (1e-3, 1.0)),
])
def test_user_bounds_replace_the_declared_ones(overrides: dict[str, float],
                                               sgd: tuple[float, float],
                                               adam: tuple[float, float]) -> None:
    config = SweepConfig(optimizers=("sgd", "adam", "rmsprop")).with_overrides(overrides)
    space = search_space(config.validated(), EPOCHS, declared())
    assert (space.lr_range("sgd"), space.lr_range("adam")) == (sgd, adam)
    default = OPTIMIZERS["rmsprop"].lr_range  # not declared: the default, user bounds apply
    assert space.lr_range("rmsprop") == (overrides.get("lr_min", default[0]),
                                         overrides.get("lr_max", default[1]))


def test_a_user_bound_that_empties_a_declared_interval_is_refused() -> None:
    with pytest.raises(UsageError, match="lr-min"):
        search_space(SweepConfig(optimizers=("sgd",), lr_min=0.6).validated(), EPOCHS,
                     declared())


class _Declaring:
    def __init__(self, ranges: dict[str, object]) -> None:
        self.name, self.default_epochs, self.lr_ranges = "bad", 1, ranges


@pytest.mark.parametrize(("ranges", "bad"), [
    ({"sgdd": (0.1, 1.0)}, "sgdd"), ({"sgd": (1.0, 0.1)}, "sgd: (1.0, 0.1)"),
    ({"adam": (0.0, 1.0)}, "adam: (0.0, 1.0)"), ({"adam": "fast"}, "adam: fast"),
])
def test_bad_declared_intervals_name_the_objective_and_the_value(ranges: dict[str, object],
                                                                  bad: str) -> None:
    with pytest.raises(UsageError) as caught:
        search_space(SweepConfig().validated(), EPOCHS, _Declaring(ranges))  # type: ignore[arg-type]
    assert caught.value.field == "lr_ranges of objective bad" and caught.value.value == bad


# ------------------------------------------------------------------ the study samples them

def test_trials_draw_their_lrs_from_the_declared_intervals() -> None:
    space = search_space(SweepConfig(optimizers=("sgd", "adam")).validated(), EPOCHS,
                         declared())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        hp = space.sample(trial)
        low, high = DECLARED[hp.optimizer]
        assert low <= hp.lr <= high
        assert trial.distributions[f"lr_{hp.optimizer}"] == FloatDistribution(low, high,
                                                                              log=True)
        study.tell(trial, math.log10(hp.lr))
        seen.add(hp.optimizer)
    assert seen == {"sgd", "adam"}


def _sweep(tmp_path: Path, objective: str, *extra: str) -> tuple[optuna.Study, dict[str, str]]:
    """A 2-trial sweep of sgd and adam; the study and its parent run's params."""
    storage, tracking = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    assert run.main(["--objective", objective, "--study", "s", "--n-trials", "2", "--epochs",
                     str(EPOCHS), "--optimizers", "sgd,adam", "--schedulers", "none",
                     "--sampler", "random", "--pruner", "none", "--storage", storage,
                     "--tracking-uri", tracking, "--quiet", "--no-plots", *extra]) == 0
    study = load_study(storage, "s")
    parent = study.user_attrs["mlflow_parent_run_id"]
    return study, MlflowClient(tracking_uri=tracking).get_run(parent).data.params


def test_a_sweep_of_a_user_objective_searches_its_declared_intervals(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="sweeps.study.opening"):
        study, params = _sweep(tmp_path, SPEC)
    assert [r.getMessage() for r in caplog.records if r.name == "sweeps.study.opening"] == [
        "lr intervals from the objective: sgd 0.02..0.5, adam 0.0003..0.03"]
    assert params["lr_source"] == "objective"
    assert (params["lr_range_sgd"], params["lr_range_adam"]) == ("0.02..0.5", "0.0003..0.03")
    assert "lr_ranges" not in study.user_attrs  # no range test ran
    for trial in study.trials:
        name = trial.params["optimizer"]
        assert trial.distributions[f"lr_{name}"] == FloatDistribution(*DECLARED[name],
                                                                      log=True)


def test_a_minibatch_objective_declaring_nothing_gets_range_test_intervals(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    study, params = _sweep(tmp_path, "tests.minibatch_objectives:tiny")
    ranges = {k: tuple(v) for k, v in study.user_attrs["lr_ranges"].items()}
    assert set(ranges) == {"sgd", "adam"}
    assert params["lr_source"] == "auto"
    for name, (low, high) in ranges.items():
        assert params[f"lr_range_{name}"] == f"{low:g}..{high:g}"
        assert ranges[name] != OPTIMIZERS[name].lr_range
    for trial in study.trials:  # the first ones at the suggestions, all within the intervals
        name = trial.params["optimizer"]
        assert trial.distributions[f"lr_{name}"] == FloatDistribution(*ranges[name], log=True)


def test_the_user_bounds_beat_the_range_test_of_a_minibatch_objective(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    study, params = _sweep(tmp_path, "tests.minibatch_objectives:tiny", "--lr-min", "1e-3",
                           "--lr-max", "1e-1")
    assert params["lr_source"] == "user" and "lr_ranges" not in study.user_attrs
    assert {t.distributions[f"lr_{t.params['optimizer']}"] for t in study.trials} <= {
        FloatDistribution(1e-3, 1e-1, log=True)}
