"""A range test suggests learning rates only where its loss has a real descent: a fall larger
than the smoothed loss's noise (and than 1% of the loss)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sweeps.diagnostics.range_curve import DESCENT_Z, descent_size, real_descent, smooth
from sweeps.diagnostics.range_test import MINIBATCH_SMOOTHING, range_test
from sweeps.diagnostics.suggestion import combine
from tests.sweeps.diagnostics import faults

STEPS = 150


def noisy(trend: np.ndarray, spread: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    losses = trend + spread * np.random.default_rng(seed).standard_normal(len(trend))
    return losses, smooth(losses, MINIBATCH_SMOOTHING)


WARMUP = STEPS // 10  # the steps a mini-batch test leaves out


@pytest.mark.parametrize("seed", range(10))
def test_a_flat_noisy_curve_has_no_real_descent(seed: int) -> None:
    losses, smoothed = noisy(np.full(STEPS, 2.3), seed=seed)
    drop, noise = descent_size(losses, smoothed, MINIBATCH_SMOOTHING, WARMUP)
    assert noise == pytest.approx(0.1 * 0.26, rel=0.3)  # 0.26: the average of 16 steps
    assert not real_descent(drop, noise, smoothed[WARMUP])


def test_the_noise_of_a_long_average_is_sqrt_of_1_minus_beta_over_1_plus_beta() -> None:
    losses, smoothed = noisy(np.full(2000, 2.3))
    _, noise = descent_size(losses, smoothed, MINIBATCH_SMOOTHING, 1000)
    assert noise == pytest.approx(0.1 * math.sqrt(0.02 / 1.98), rel=0.1)


def test_a_curve_that_falls_has_one() -> None:
    losses, smoothed = noisy(np.linspace(2.3, 0.5, STEPS))
    drop, noise = descent_size(losses, smoothed, MINIBATCH_SMOOTHING, WARMUP)
    assert drop > 1.0 and real_descent(drop, noise, smoothed[WARMUP])


def test_an_exact_loss_needs_only_to_fall_one_percent() -> None:
    assert real_descent(0.02, 0.0, 1.0) and not real_descent(0.005, 0.0, 1.0)


def test_dead_units_give_no_suggestion_and_a_healthy_model_does() -> None:
    dead = range_test(faults.dead_relu(), "adam", steps=100)
    assert not dead.descends and dead.suggestions == {}
    assert dead.drop < DESCENT_Z * dead.noise
    assert combine(dead, 1e-3) is None  # not even the update-ratio rule's number
    healthy = range_test(faults.healthy(), "adam", steps=100)
    assert healthy.descends and "valley" in healthy.suggestions
    assert healthy.drop > 3 * DESCENT_Z * healthy.noise
