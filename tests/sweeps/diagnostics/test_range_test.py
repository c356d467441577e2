"""The LR range test: restores what it touches, survives divergence, reads sane suggestions;
on a mini-batch objective it trains one batch a step and reads a smoothed curve."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from objectives import build
from sweeps.diagnostics.range_curve import edge, smooth, steepest, valley
from sweeps.diagnostics.range_test import (
    MINIBATCH_SMOOTHING,
    RangeTestResult,
    lr_schedule,
    range_test,
    range_test_module,
)
from sweeps.diagnostics.suggestion import LrSuggestion, combine
from sweeps.optim.optimizers import build_optimizer

try:  # tests/ as a plain folder (pytest puts it on sys.path) or as a package
    from minibatch_objectives import tiny
    from toy_objectives import Quadratic
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import tiny
    from tests.toy_objectives import Quadratic


def tiny_regression() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(32, 3, generator=generator)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
    return model, inputs, targets


def assert_same_state(actual: dict, expected: dict) -> None:
    assert actual["param_groups"] == expected["param_groups"]
    assert actual["state"].keys() == expected["state"].keys()
    for key, state in expected["state"].items():
        assert actual["state"][key].keys() == state.keys()
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(actual["state"][key][name]),
                               torch.as_tensor(value)), (key, name)


def test_restores_parameters_gradients_and_adam_state() -> None:
    model, inputs, targets = tiny_regression()
    params = dict(model.named_parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def loss_fn() -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(inputs), targets)

    for _ in range(5):  # momentum buffers and step counts that are not the defaults
        optimizer.zero_grad()
        loss_fn().backward()
        optimizer.step()
    values = {k: p.detach().clone() for k, p in params.items()}
    grads = {k: p.grad.clone() for k, p in params.items()}
    state = {"state": {k: {n: torch.as_tensor(v).clone() for n, v in s.items()}
                       for k, s in optimizer.state_dict()["state"].items()},
             "param_groups": [dict(g) for g in optimizer.state_dict()["param_groups"]]}

    result = range_test_module(params, optimizer, loss_fn, lr_min=1e-5, lr_max=10.0, steps=60)

    assert len(result.lrs) > 10 and not np.allclose(result.losses, result.losses[0])
    for key, p in params.items():
        assert torch.equal(p.detach(), values[key]), key
        assert torch.equal(p.grad, grads[key]), key
    assert_same_state(optimizer.state_dict(), state)
    assert optimizer.param_groups[0]["lr"] == 0.01


class Interrupted(Exception):
    pass


def test_restores_parameters_when_the_loss_raises() -> None:
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    optimizer = torch.optim.SGD([x], lr=0.1)
    calls = 0

    def loss_fn() -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls > 10:
            raise Interrupted
        return (x**2).sum()

    with pytest.raises(Interrupted):
        range_test_module({"x": x}, optimizer, loss_fn, lr_min=1e-3, lr_max=1.0, steps=50)
    assert torch.equal(x.detach(), torch.tensor([1.0, 2.0]))
    assert x.grad is None and optimizer.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("lr_max", [1e6, 1e300])
def test_a_diverging_loss_stops_the_test_with_finite_suggestions(lr_max: float) -> None:
    result = range_test(Quadratic(), "sgd", lr_min=1e-4, lr_max=lr_max, steps=200)

    assert result.stopped_early and len(result.lrs) < 200
    assert result.suggestions.keys() == {"steepest", "valley", "edge"}
    for lr in result.suggestions.values():
        assert math.isfinite(lr) and result.lrs[0] <= lr <= result.lrs[-1]


def test_suggestions_bracket_the_best_lr_of_a_quadratic() -> None:
    # sum(x**2) under SGD: x <- (1 - 2 lr) x, so lr 0.5 solves it in one step, lr > 1 diverges
    result = range_test(Quadratic(), "sgd", lr_min=1e-4, lr_max=1e6, steps=200)
    assert result.valley is not None and result.edge is not None
    assert result.valley < 0.5 < result.edge
    suggestion = combine(result, None)
    assert suggestion is not None and 0.1 < suggestion.lr < 1.0


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adagrad"])
def test_seed_suggestions_lie_within_the_range_tested(optimizer: str) -> None:
    result = range_test(build("rebalance"), optimizer)
    assert {"steepest", "valley"} <= result.suggestions.keys()
    for lr in result.suggestions.values():
        assert result.lr_min <= lr <= result.lr_max
    frame = result.to_frame()
    assert list(frame.columns) == ["lr", "loss", "smoothed", "update_ratio"]
    assert len(frame) == len(result.lrs)


def test_lr_schedule_is_exponential_between_the_bounds() -> None:
    lrs = lr_schedule(1e-3, 1e3, 7)
    np.testing.assert_allclose(lrs, [1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3])
    with pytest.raises(ValueError, match="lr_min < lr_max"):
        lr_schedule(1.0, 0.1, 10)


@pytest.mark.parametrize(("losses", "beta", "expected"), [
    ([1.0, 1.0, 1.0], 0.9, [1.0, 1.0, 1.0]),  # bias correction: no pull towards 0
    ([0.0, 1.0], 0.5, [0.0, 2 / 3]),
    ([4.0, 2.0, 1.0], 0.0, [4.0, 2.0, 1.0]),  # beta 0: no smoothing
])
def test_smooth_is_a_bias_corrected_moving_average(losses: list[float], beta: float,
                                                  expected: list[float]) -> None:
    np.testing.assert_allclose(smooth(np.array(losses), beta), expected)


LRS = np.logspace(-3, 3, 61)  # 10 steps per decade


def s_curve(center: float, rise_after: float | None = None) -> np.ndarray:
    """Falls from 1 to 0 around ``center`` (log scale); then rises past ``rise_after``."""
    x = np.log10(LRS)
    y = 1 / (1 + np.exp(4 * (x - math.log10(center))))
    if rise_after is not None:
        y = y + np.where(LRS > rise_after, 10 * (x - math.log10(rise_after)), 0.0)
    return y


@pytest.mark.parametrize(("curve", "steep", "valley_lr", "edge_lr"), [
    (s_curve(1.0, rise_after=100.0), 1.0, 1.0, 100.0),
    (s_curve(0.01, rise_after=10.0), 0.01, 0.01, 10.0),
    (s_curve(1.0), 1.0, 1.0, None),  # still falling at the end: no edge
    (np.where(LRS < LRS[50], s_curve(1.0), np.nan), 1.0, 1.0, LRS[49]),  # blew up
    (np.ones(61), None, None, None),  # flat: no descent
    (np.linspace(1.0, 2.0, 61), None, None, None),  # rising from the start
])
def test_reading_the_curve(curve: np.ndarray, steep: float | None, valley_lr: float | None,
                           edge_lr: float | None) -> None:
    for found, expected in ((steepest(LRS, curve), steep), (valley(LRS, curve), valley_lr),
                            (edge(LRS, curve), edge_lr)):
        if expected is None:
            assert found is None
        else:
            assert found == pytest.approx(expected, rel=0.3)


def result_with(steep: float | None, valley_lr: float | None, edge_lr: float | None,
                minibatch: bool = False) -> RangeTestResult:
    empty = np.empty(0)
    return RangeTestResult(empty, empty, empty, empty, steep, valley_lr, edge_lr, False, 1e-6,
                           1e8, 1.0, minibatch=minibatch)


@pytest.mark.parametrize(("result", "ratio_lr", "expected"), [
    (result_with(1e4, 1e5, 1e7), 1e3, LrSuggestion(1e6, 1e3, 1e7, "middle of valley and edge")),
    (result_with(1e4, 1e6, None), 1e8, LrSuggestion(1e5, 1e4, 1e8,
                                                    "mean of steepest and valley")),
    (result_with(1e4, 1e5, 1e7, minibatch=True), 1e3,
     LrSuggestion(1e5, 1e3, 1e7, "valley of the smoothed loss")),
    (result_with(1e4, None, 1e6, minibatch=True), None,
     LrSuggestion(1e5, 1e4, 1e6, "mean of steepest and edge")),
    (result_with(None, None, None), 1e3, LrSuggestion(1e3, 1e3, 1e3, "update-ratio rule")),
    (result_with(None, None, None), math.inf, None),
    (None, None, None),
])
def test_combine(result: RangeTestResult | None, ratio_lr: float | None,
                 expected: LrSuggestion | None) -> None:
    found = combine(result, ratio_lr)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found.lr, found.low, found.high) == pytest.approx(
            (expected.lr, expected.low, expected.high))
        assert found.basis == expected.basis


# -- mini-batch objectives ------------------------------------------------------------------

CPU = torch.device("cpu")


def test_a_full_batch_test_reads_its_whole_curve_smoothed_with_0_9() -> None:
    result = range_test(Quadratic(), "sgd", lr_min=1e-4, lr_max=1e6, steps=100)
    assert (result.beta, result.warmup, result.minibatch) == (0.9, 0, False)


def test_minibatch_test_trains_one_batch_a_step_in_the_seeded_order() -> None:
    objective = tiny()  # 37 rows in batches of 8: 5 batches an epoch
    result = range_test(objective, "sgd", lr_min=1e-3, lr_max=1e3, steps=40)

    # the same run by hand: a trial's state, epoch after epoch of batches, one step each;
    # the loss of a step is the next batch's, before that batch is trained on
    params = {k: v.clone().requires_grad_(True) for k, v in objective.init_params(CPU).items()}
    state = objective.start_trial(CPU)
    batches = [b for epoch in range(9) for b in objective.batches(epoch, CPU)]
    optimizer = build_optimizer("sgd", list(params.values()), 1e-3, {})
    loss = objective.batch_loss(params, state, batches[0])
    expected = []
    for i, lr in enumerate(result.lrs):
        optimizer.param_groups[0]["lr"] = float(lr)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss = objective.batch_loss(params, state, batches[i + 1])
        expected.append(loss.item())

    assert result.minibatch and len(result.lrs) > 10  # more than two epochs of batches
    assert result.initial_loss == objective.batch_loss(
        objective.init_params(CPU), objective.start_trial(CPU), batches[0]).item()
    np.testing.assert_array_equal(result.losses, expected)


def test_minibatch_test_is_the_same_twice_and_follows_the_objectives_seed() -> None:
    first, again = (range_test(tiny(), "adam", steps=60) for _ in range(2))
    other = range_test(tiny(seed=1), "adam", steps=60)

    np.testing.assert_array_equal(first.losses, again.losses)
    assert first.suggestions == again.suggestions
    assert not np.array_equal(first.losses[:10], other.losses[:10])  # another batch order


def test_minibatch_losses_are_smoothed_by_a_bias_corrected_moving_average() -> None:
    result = range_test(tiny(), "sgd", steps=60)
    expected, average = [], 0.0
    for i, loss in enumerate(result.losses, start=1):
        average = 0.98 * average + 0.02 * loss
        expected.append(average / (1 - 0.98**i))

    assert result.beta == MINIBATCH_SMOOTHING == 0.98
    np.testing.assert_allclose(result.smoothed, expected, rtol=1e-12)
    assert list(result.to_frame().columns) == ["lr", "loss", "smoothed", "update_ratio"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_minibatch_test_stops_on_the_smoothed_loss_and_suggests_a_tested_lr(
        optimizer: str) -> None:
    result = range_test(tiny(), optimizer)  # the default bounds: the loss blows up

    assert result.stopped_early and len(result.lrs) < 200
    last, before = result.smoothed[-1], result.smoothed[:-1]
    assert not math.isfinite(last) or last > 4 * before.min()  # the stop rule, and no sooner
    assert np.all(before[1:] <= 4 * np.minimum.accumulate(before)[:-1])
    assert result.warmup == 20  # a tenth of the steps: the average is still settling
    assert result.suggestions.keys() == {"steepest", "valley", "edge"}
    for lr in result.suggestions.values():
        assert math.isfinite(lr) and result.lrs[result.warmup] <= lr <= result.lrs[-1]
    suggestion = combine(result, None)
    assert suggestion is not None and result.lr_min <= suggestion.lr <= result.lr_max
