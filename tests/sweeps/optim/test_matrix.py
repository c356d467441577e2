"""Contract: every optimizer x scheduler pair of the search space trains, follows its schedule
and honours its sub-parameters (SPEC section 7)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from objectives import Objective
from objectives.module import ModuleObjective
from objectives.rebalance import Rebalance
from sweeps.optim.optimizers import OPTIMIZERS
from sweeps.optim.schedulers import SCHEDULERS
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import ObjectiveStartError, TrainResult, train
from sweeps.training.stats import EPOCH_METRICS

EPOCHS = 60
PAIRS = [(o, s) for o in OPTIMIZERS for s in SCHEDULERS]
# learning rates that make steady progress within EPOCHS: plain gradient steps need a scale
# that matches the gradient's, adaptive ones about the parameter change per step
LR = {
    "rebalance": {"SGD": 1e3, "adaptive": 0.1},
    "digits_mlp": {"SGD": 0.5, "adaptive": 0.01},
}


def sensible_lr(objective: str, optimizer: str) -> float:
    kind = "SGD" if OPTIMIZERS[optimizer].torch_name == "SGD" else "adaptive"
    return LR[objective][kind]


class Flat:
    """A constant loss with zero gradients: the learning rate is all that moves."""

    name = "flat"
    default_epochs = 10

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        return {"x": torch.ones(3, dtype=torch.float64, device=device)}

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return (params["x"] * 0.0).sum() + 1.0

    def arguments(self) -> dict[str, Any]:
        return {}


def onecycle_lr(max_lr: float, total: int, pct_start: float = 0.3) -> np.ndarray:
    """OneCycleLR's closed form (cosine annealing, div_factor 25, final_div_factor 1e4)."""
    initial, peak_step = max_lr / 25, pct_start * total - 1
    final = initial / 1e4

    def anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)

    return np.array([
        anneal(initial, max_lr, step / peak_step) if step <= peak_step
        else anneal(max_lr, final, (step - peak_step) / (total - 1 - peak_step))
        for step in range(total)
    ])


def expected_lr(hp: Hyperparams, epochs: int) -> np.ndarray | None:
    """The lr of every epoch in closed form (None for plateau, which depends on the loss)."""
    e = np.arange(epochs)
    o = hp.options
    if hp.scheduler == "none":
        return np.full(epochs, hp.lr)
    if hp.scheduler == "step":
        step_size = int(o.get("step_size", max(1, epochs // 4)))
        return hp.lr * o.get("step_gamma", 0.5) ** (e // step_size)
    if hp.scheduler == "exponential":
        return hp.lr * o.get("exp_gamma", 0.01 ** (1 / epochs)) ** e
    if hp.scheduler == "cosine":
        return hp.lr * (1 + np.cos(np.pi * e / epochs)) / 2
    if hp.scheduler == "onecycle":
        return onecycle_lr(hp.lr, epochs, o.get("pct_start", 0.3))
    assert hp.scheduler == "plateau", f"no expected schedule for {hp.scheduler}"
    return None


def assert_completed_run(result: TrainResult, objective: Objective, epochs: int) -> None:
    assert result.status == "complete", result.failure
    assert result.failure is None and result.failure_epoch is None
    assert result.epochs_run == epochs == len(result.history)
    np.testing.assert_array_equal(result.history.epochs, np.arange(epochs))
    for metric in EPOCH_METRICS:
        values = getattr(result.history, metric)
        assert values.shape == (epochs,), metric
        assert np.isfinite(values).all(), metric
    assert math.isfinite(result.final_loss)
    assert result.final_loss < result.history.loss[0]  # the steps made progress
    assert result.best_loss == min(result.history.loss.min(), result.final_loss)
    assert result.params is not None
    initial = objective.init_params(torch.device("cpu"))
    assert {k: v.shape for k, v in result.params.items()} == {
        k: v.shape for k, v in initial.items()
    }


def assert_follows_schedule(hp: Hyperparams, lr: np.ndarray) -> None:
    expected = expected_lr(hp, len(lr))
    if expected is not None:
        np.testing.assert_allclose(lr, expected, rtol=1e-9, atol=0)
        return
    ratios = lr[1:] / lr[:-1]  # plateau: only ever multiplied by its factor
    factor = hp.options.get("plateau_factor", 0.5)
    assert lr[0] == hp.lr
    assert np.all(np.isclose(ratios, 1.0, rtol=1e-12) | np.isclose(ratios, factor, rtol=1e-12))


@pytest.mark.parametrize(("optimizer", "scheduler"), PAIRS)
def test_every_pair_trains_rebalance(optimizer: str, scheduler: str,
                                     rebalance: Rebalance) -> None:
    hp = Hyperparams(optimizer, sensible_lr("rebalance", optimizer), scheduler)
    result = train(rebalance, hp, EPOCHS)
    assert_completed_run(result, rebalance, EPOCHS)
    assert_follows_schedule(hp, result.history.lr)


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_optimizer_trains_a_multi_tensor_network(optimizer: str, scheduler: str,
                                                       digits_mlp: ModuleObjective) -> None:
    hp = Hyperparams(optimizer, sensible_lr("digits_mlp", optimizer), scheduler)
    result = train(digits_mlp, hp, EPOCHS)
    assert_completed_run(result, digits_mlp, EPOCHS)
    assert_follows_schedule(hp, result.history.lr)


# (scheduler, options, epochs, lr of every epoch for an initial lr of 1)
SCHEDULE_TABLES = [
    ("none", {}, 4, [1.0] * 4),
    ("step", {}, 8, [1.0] * 2 + [0.5] * 2 + [0.25] * 2 + [0.125] * 2),
    ("step", {"step_size": 3, "step_gamma": 0.1}, 8, [1.0] * 3 + [0.1] * 3 + [0.01] * 2),
    ("exponential", {}, 4, [1.0, 0.01 ** 0.25, 0.01 ** 0.5, 0.01 ** 0.75]),
    ("exponential", {"exp_gamma": 0.5}, 5, [1.0, 0.5, 0.25, 0.125, 0.0625]),
    ("cosine", {}, 4, [1.0, (2 + math.sqrt(2)) / 4, 0.5, (2 - math.sqrt(2)) / 4]),
    ("onecycle", {}, 10, onecycle_lr(1.0, 10, 0.3).tolist()),
    ("onecycle", {"pct_start": 0.5}, 10, onecycle_lr(1.0, 10, 0.5).tolist()),
    ("plateau", {"plateau_patience": 2, "plateau_factor": 0.5}, 10,
     [1.0] * 4 + [0.5] * 3 + [0.25] * 3),
    ("plateau", {"plateau_patience": 1, "plateau_factor": 0.1}, 6,
     [1.0] * 3 + [0.1] * 2 + [0.01]),
]


@pytest.mark.parametrize(("scheduler", "options", "epochs", "targets"), SCHEDULE_TABLES)
def test_schedule_matches_table(scheduler: str, options: dict[str, float], epochs: int,
                                targets: list[float]) -> None:
    result = train(Flat(), Hyperparams("sgd", 1.0, scheduler, options), epochs)
    assert result.status == "complete"
    assert result.history.lr.tolist() == pytest.approx(targets, rel=1e-12, abs=0)


def test_onecycle_rises_to_its_peak_then_falls() -> None:
    lr = train(Flat(), Hyperparams("adagrad", 0.2, "onecycle"), EPOCHS).history.lr
    peak = int(np.argmax(lr))
    assert peak == round(0.3 * EPOCHS) - 1
    assert lr[peak] == pytest.approx(0.2, rel=1e-12)
    assert lr[0] == pytest.approx(0.2 / 25, rel=1e-12)
    assert np.all(np.diff(lr[: peak + 1]) > 0)
    assert np.all(np.diff(lr[peak:]) < 0)


def test_cosine_decreases_towards_zero() -> None:
    lr = train(Flat(), Hyperparams("adam", 0.2, "cosine"), EPOCHS).history.lr
    assert lr[0] == 0.2
    assert np.all(np.diff(lr) < 0)
    assert lr[-1] < 0.2 * 1e-2


def losses(objective: Objective, optimizer: str, lr: float, options: dict[str, float],
           epochs: int = 30) -> np.ndarray:
    result = train(objective, Hyperparams(optimizer, lr, "none", options), epochs)
    assert result.status == "complete", result.failure
    return result.history.loss


def test_momentum_option_takes_effect(rebalance: Rebalance) -> None:
    plain = losses(rebalance, "sgd", 1e3, {})
    np.testing.assert_array_equal(losses(rebalance, "momentum", 1e3, {"momentum": 0.0}), plain)
    heavy = losses(rebalance, "momentum", 1e3, {"momentum": 0.9})
    assert heavy[1] == plain[1]  # the first step has no history to carry
    assert not np.allclose(heavy, plain, rtol=1e-6)
    assert not np.allclose(losses(rebalance, "momentum", 1e3, {"momentum": 0.5}), heavy,
                           rtol=1e-6)


def test_searched_sub_parameters_default_to_documented_values(rebalance: Rebalance) -> None:
    np.testing.assert_array_equal(losses(rebalance, "momentum", 1e3, {}),
                                  losses(rebalance, "momentum", 1e3, {"momentum": 0.9}))
    np.testing.assert_array_equal(losses(rebalance, "adamw", 0.1, {}),
                                  losses(rebalance, "adamw", 0.1, {"weight_decay": 0.01}))


def test_nesterov_differs_from_momentum(rebalance: Rebalance) -> None:
    classic = losses(rebalance, "momentum", 1e3, {"momentum": 0.9})
    nesterov = losses(rebalance, "nesterov", 1e3, {"momentum": 0.9})
    assert not np.allclose(classic, nesterov, rtol=1e-6)


def test_nesterov_requires_momentum(rebalance: Rebalance) -> None:
    with pytest.raises(ObjectiveStartError, match="(?i)nesterov"):
        train(rebalance, Hyperparams("nesterov", 1e3, "none", {"momentum": 0.0}), 5)


def test_weight_decay_option_takes_effect(rebalance: Rebalance) -> None:
    adam = losses(rebalance, "adam", 0.1, {})
    np.testing.assert_allclose(losses(rebalance, "adamw", 0.1, {"weight_decay": 0.0}), adam,
                               rtol=1e-12)
    assert not np.allclose(losses(rebalance, "adamw", 0.1, {"weight_decay": 0.1}), adam,
                           rtol=1e-6)


def test_rmsprop_momentum_option_takes_effect(rebalance: Rebalance) -> None:
    without = losses(rebalance, "rmsprop", 0.1, {"momentum": 0.0})
    assert not np.allclose(losses(rebalance, "rmsprop", 0.1, {"momentum": 0.5}), without,
                           rtol=1e-6)
