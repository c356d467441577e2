"""Verdict rules against tables of example trajectories, and the seed case.

Two expectations of the first table changed when the ``flat`` verdict came: a loss that does
not move at all while the parameters move 1e-3 or 1e-2 of their size per step, for 500 epochs
("flat-but-moving", "small-rise-tolerated"), was ``slow`` with the advice of a larger lr (or
"another optimizer, a schedule or more epochs"); the parameters travel several times their
own size and the loss does not care, so no learning rate is the cure: ``flat``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from sweeps.training.stats import EpochStats
from sweeps.training.verdicts import Thresholds, Verdict, judge, ratio_factor, ratio_rule

N = 500  # epochs of the synthetic trajectories


def stats(loss: np.ndarray, ratio: float | np.ndarray) -> EpochStats:
    """A trajectory with the given losses and update ratios (|theta| = 1, lr = 1)."""
    loss = np.asarray(loss, dtype=float)
    ratios = np.broadcast_to(np.asarray(ratio, dtype=float), loss.shape).copy()
    return EpochStats(0, loss, ratios.copy(), ratios.copy(), ratios, np.ones(len(loss)))


def geometric(first: float, last: float, n: int = N) -> np.ndarray:
    return np.geomspace(first, last, n)


def zigzag(n: int = N) -> np.ndarray:
    """Falls by 10x overall but goes up in every other epoch."""
    base = geometric(1.0, 0.1, n)
    return base * np.where(np.arange(n) % 2 == 1, 1.3, 1.0)


def converged_with_noise() -> np.ndarray:
    """Falls to ~1e-30 within 100 epochs, then float noise around it (up half the time)."""
    noise = 1e-30 * (1 + 0.5 * (np.arange(N - 100) % 2))
    return np.concatenate([geometric(1.0, 1e-30, 100), noise])


def step_up() -> np.ndarray:
    """Flat, then up by 0.5% in the last epoch."""
    return np.where(np.arange(N) == N - 1, 1.005, 1.0)


@dataclass(frozen=True)
class Case:
    name: str
    loss: np.ndarray
    ratio: float | np.ndarray
    verdict: str
    reason_has: str
    failed: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)


CASES = [
    Case("seed-like", np.linspace(2.3874e-3, 2.3873e-3, N), 4.8e-9, "stalled",
         "parameters move 4.8e-09 of their size per step (update ratio); try ~2e+05x larger lr"),
    Case("nothing-moves", np.full(N, 0.5), 0.0, "stalled", "do not move at all (update ratio 0)"),
    Case("crawling", np.linspace(1.0, 0.7, N), 5e-5, "slow",
         "the loss fell only 30.0% in 500 epochs; parameters move 5.0e-05"),
    Case("plateau", np.linspace(1.0, 0.95, N), 1e-2, "slow", "the loss fell only 5.0%"),
    Case("flat-but-moving", np.full(N, 1.0), 1e-3, "flat",
         "the loss stays at its starting level (1 -> 1) while the parameters move (1.0e-03 of "
         "their size per step): no learning rate fixes that"),
    Case("steady-descent", geometric(1.0, 1e-6), 1e-3, "healthy", "the loss fell 1.0e+06x"),
    Case("converged-then-still", np.concatenate([geometric(1.0, 1e-12, 50), np.full(N - 50,
         1e-12)]), np.concatenate([np.full(50, 1e-2), np.full(N - 50, 1e-9)]), "healthy",
         "median update ratio 1.0e-09"),
    Case("float-noise-at-zero", converged_with_noise(), 1e-3, "healthy", "the loss fell"),
    Case("half-way", geometric(1.0, 0.4), 1e-3, "healthy", "the loss fell 60.0% (1 -> 0.4)"),
    Case("rising", np.linspace(1.0, 1.5, N), 1e-2, "unstable", "the loss rose 50.0% over the run"),
    Case("oscillating", zigzag(), 1e-2, "unstable", "the loss went up in 50% of epochs"),
    Case("creeping-up", np.linspace(1.0, 1.005, N), 1e-2, "unstable",
         "the loss went up in 100% of epochs"),
    Case("exploding", geometric(1.0, 1e4), 1e-1, "diverged", "the loss grew 1.0e+04x"),
    Case("non-finite-loss", np.append(geometric(1.0, 2.0, N - 1), np.inf), 1e-1, "diverged",
         "non-finite loss at epoch 499"),
    Case("failed-trial", geometric(1.0, 0.5), 1e-3, "diverged",
         "the run failed: non-finite gradient", failed="non-finite gradient"),
    Case("failed-at-epoch-0", np.empty(0), 0.0, "diverged", "the run failed: boom",
         failed="boom"),
    # threshold overrides
    Case("stalled-threshold-lowered", np.linspace(2.3874e-3, 2.3873e-3, N), 4.8e-9, "slow",
         "try ~2e+05x larger lr", thresholds=Thresholds(stalled_ratio=1e-9)),
    Case("stalled-target-raised", np.linspace(2.3874e-3, 2.3873e-3, N), 4.8e-9, "stalled",
         "try ~2e+06x larger lr", thresholds=Thresholds(target_ratio=1e-2)),
    Case("oscillation-tolerated", zigzag(), 1e-2, "healthy", "the loss fell",
         thresholds=Thresholds(oscillation=0.6)),
    Case("small-rise-tolerated", step_up(), 1e-2, "flat", "the loss stays at its starting level"),
    Case("small-rise-strict", step_up(), 1e-2, "unstable", "the loss rose 0.5%",
         thresholds=Thresholds(rise_tolerance=0.001)),
    Case("diverge-factor-lowered", geometric(1.0, 50.0), 1e-1, "diverged", "grew 5.0e+01x",
         thresholds=Thresholds(diverge_factor=10)),
    Case("slow-improvement-raised", geometric(1.0, 0.4), 1e-3, "slow", "fell only 60.0%",
         thresholds=Thresholds(slow_improvement=0.7)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_verdict_table(case: Case) -> None:
    verdict = judge(stats(case.loss, case.ratio), failed=case.failed, thresholds=case.thresholds)
    assert verdict.name == case.verdict, verdict.reason
    assert case.reason_has in verdict.reason
    assert "\n" not in verdict.reason


@pytest.mark.parametrize(("lr", "ratio", "target", "expected"), [
    (0.01, 5e-9, 1e-3, 2e3),
    (1.0, 1e-3, 1e-3, 1.0),
    (1e-3, 1e-2, 1e-3, 1e-4),
    (0.01, 0.0, 1e-3, math.inf),
])
def test_ratio_rule_scales_lr_to_the_target_ratio(lr: float, ratio: float, target: float,
                                                 expected: float) -> None:
    assert ratio_rule(lr, ratio, target) == pytest.approx(expected)
    assert ratio_factor(ratio, target) == pytest.approx(expected / lr)


@pytest.mark.parametrize("bad", [{"stalled_ratio": -1.0}, {"target_ratio": 0.0},
                                 {"oscillation": math.nan}, {"rise_noise": -1e-3},
                                 {"noise_z": 0.0}, {"giveback": -0.5}, {"blind_grad": math.inf},
                                 {"max_classes": 1}])
def test_thresholds_name_the_bad_value(bad: dict[str, Any]) -> None:
    (name, value), = bad.items()
    with pytest.raises(ValueError, match=f"{name} must be .* but got {value!r}"):
        Thresholds(**bad)


def test_empty_statistics_without_a_failure_are_refused() -> None:
    with pytest.raises(ValueError, match="no epochs"):
        judge(EpochStats.empty())


def test_seed_case_is_stalled_with_a_reason_naming_the_update_ratio() -> None:
    from objectives import build
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import train

    result = train(build("rebalance"), Hyperparams("sgd", 0.01), 500)
    verdict = judge(result.history, failed=result.failure)
    assert verdict == Verdict("stalled", "parameters move 4.8e-09 of their size per step "
                                         "(update ratio); try ~2e+05x larger lr")


def test_a_minibatch_run_is_judged_from_the_loss_it_started_at() -> None:
    """A mini-batch run's first epoch is a mean over its steps: a run that blew up within it
    starts its epochs high. Judged from the first batch's loss, it diverged."""
    from dataclasses import replace

    exploded = stats(geometric(1e6, 7e5), 1e2)
    assert judge(exploded).name != "diverged"  # from the epoch means alone it looks fine
    verdict = judge(replace(exploded, initial_loss=2.3))
    assert verdict.name == "diverged"
    assert "(2.3 -> 7e+05)" in verdict.reason


# -- mini-batch runs: the batches' noise and the validation loss ------------------------------

M, STEPS = 40, 16  # epochs and steps an epoch of the mini-batch trajectories


def minibatch(loss: np.ndarray, ratio: float, spread: float | np.ndarray, initial: float,
              val: np.ndarray | None = None, **scores: np.ndarray) -> EpochStats:
    """A mini-batch trajectory: epoch means ``loss``, ``STEPS`` steps an epoch, the first
    batch's loss ``initial``; the step losses' standard deviation is ``spread`` times each
    epoch's mean (a number) or ``spread`` itself (an array, one value an epoch)."""
    loss = np.asarray(loss, dtype=float)
    std = np.asarray(spread, dtype=float) * (loss if np.ndim(spread) == 0 else 1.0)
    extra = {} if val is None else {"val_loss": np.asarray(val, dtype=float),
                                    **{f"val_{k}": v for k, v in scores.items()}}
    base = stats(loss, ratio)
    return EpochStats(0, base.loss, base.grad_abs_mean, base.update_abs_mean, base.update_ratio,
                      base.lr, extra=extra, initial_loss=initial,
                      loss_std=np.broadcast_to(std, loss.shape).copy(),
                      steps=np.full(len(loss), STEPS))


def wobble(first: float, last: float, amount: float = 0.05, n: int = M) -> np.ndarray:
    """Falls geometrically, the odd epochs ``amount`` above the trend, the even ones below."""
    return geometric(first, last, n) * (1 + amount * np.where(np.arange(n) % 2, 1.0, -1.0))


def then(head: np.ndarray, value: float, n: int = M) -> np.ndarray:
    return np.concatenate([head, np.full(n - len(head), value)])


@dataclass(frozen=True)
class Run:
    name: str
    stats: EpochStats
    verdict: str
    reason_has: str


RUNS = [
    # an ordinary converging run: up in every other epoch, each time well within the noise
    Run("ups-within-the-noise", minibatch(wobble(2.0, 0.05), 1e-3, 0.5, 2.3), "healthy",
        "the loss fell"),
    Run("ups-beyond-the-noise", minibatch(wobble(2.0, 0.05), 1e-3, 0.001, 2.3), "unstable",
        "the loss went up in 51% of epochs beyond the batches' noise; try a smaller lr"),
    Run("climbs-back", minibatch(then(geometric(2.3, 0.2, 20), 1.2), 1e-3, 0.3, 2.3),
        "unstable", "the loss climbed back from 0.2 (epoch 19) to 1.2 at epoch 20, 48% of "
                    "its fall so far, beyond the batches' noise"),
    Run("blow-up-at-the-start-then-learns",
        minibatch(np.append(8.0, geometric(1.5, 0.05, M - 1)), 1e-3,
                  np.append(10.0, 0.3 * geometric(1.5, 0.05, M - 1)), 2.3), "healthy",
        "the loss fell"),
    Run("blow-up-at-the-start-for-good",
        minibatch(np.append(48.0, np.full(M - 1, 2.31)), 1e-2,
                  np.append(90.0, np.full(M - 1, 0.02)), 2.55),
        "unstable", "the loss rose above its start (2.55 -> 48 at epoch 0) beyond the "
                    "batches' noise and never fell far below it again"),
    Run("stalled-within-the-first-batch-noise", minibatch(np.full(M, 1.374), 1e-8, 0.03, 1.359),
        "stalled", "parameters move 1.0e-08 of their size per step"),
    Run("flat-at-chance", minibatch(np.append(2.4, 2.303 + 0.002 * np.sin(np.arange(M - 1))),
                                    1e-2, 0.01, 2.55),
        "flat", "the loss stays at chance (2.3, ln 10 = 2.3: a uniform guess over 10 classes) "
                "while the parameters move (1.0e-02 of their size per step): no learning rate "
                "fixes that"),
    Run("falls-slowly-but-surely", minibatch(np.linspace(2.3, 2.23, M), 1e-3, 0.01, 2.3),
        "slow", "the loss fell only 3.0%"),
    Run("memorizing", minibatch(geometric(1.3, 0.04), 1e-2, 0.2, 1.39,
                                np.linspace(1.9, 4.5, M), accuracy=np.linspace(0.18, 0.24, M)),
        "memorizing", "the training loss fell 97% (1.39 -> 0.04) but the validation loss stays "
                      "near or above that start (best 1.9, last 4.5, val_accuracy 0.18 -> "
                      "0.24): the model fits noise"),
    Run("overfitting", minibatch(geometric(1.2, 0.001), 1e-2, 0.2, 1.49,
                                 np.concatenate([[1.02, 1.01], np.linspace(1.1, 3.5, M - 2)])),
        "overfitting", "the validation loss rose from its best 1.01 (epoch 1) to 3.5, 519% of "
                       "its fall, while the training loss went to 0.001: the gap grows; stop "
                       "near epoch 1"),
    Run("a-small-rise-of-the-validation-loss-is-healthy",
        minibatch(geometric(1.8, 0.005), 1e-2, 0.5, 2.33,
                  then(geometric(1.9, 0.027, 30), 0.058)), "healthy", "the loss fell"),
]


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_minibatch_verdict_table(run: Run) -> None:
    verdict = judge(run.stats)
    assert verdict.name == run.verdict, verdict.reason
    assert run.reason_has in verdict.reason, verdict.reason
    assert "\n" not in verdict.reason


def test_without_the_batches_noise_ordinary_ups_look_unstable() -> None:
    """The same converging run judged without its step losses' spread: the old rule counted
    every rise, and the best trials of a sweep were called unstable."""
    from dataclasses import replace

    run = minibatch(wobble(2.0, 0.05), 1e-3, 0.5, 2.3)
    assert judge(run).name == "healthy"
    assert judge(replace(run, loss_std=None, steps=None)).reason.startswith(
        "the loss went up in 51% of epochs; ")


@pytest.mark.parametrize(("level", "classes"), [
    (math.log(10), 10), (math.log(4) + 0.005, 4), (math.log(2), 2), (2.25, None),
    (math.log(20), 20), (math.log(50), None), (0.3, None), (math.nan, None),
])
def test_chance_is_ln_c_for_a_few_classes(level: float, classes: int | None) -> None:
    from sweeps.training.verdicts.rules import _chance

    assert _chance(level, Thresholds()) == classes
