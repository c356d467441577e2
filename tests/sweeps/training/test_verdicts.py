"""Verdict rules against tables of example trajectories, and the seed case."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
    Case("flat-but-moving", np.full(N, 1.0), 1e-3, "slow", "the loss did not fall"),
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
    Case("small-rise-tolerated", step_up(), 1e-2, "slow", "the loss did not fall"),
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
                                 {"oscillation": math.nan}, {"rise_noise": -1e-3}])
def test_thresholds_name_the_bad_value(bad: dict[str, float]) -> None:
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
