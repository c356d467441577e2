"""The verdict names the parameter tensors that stall while others move: synthetic statistics
against a table, and a real model whose first weight gets a gradient scaled by 1e-12."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from sweeps.training.stats import EpochStats
from sweeps.training.verdicts import Thresholds, judge
from tests.sweeps.training.tensor_objectives import grad_scaled

N = 200  # epochs of the synthetic trajectories


def stats(loss: np.ndarray, ratios: dict[str, float], grads: dict[str, float] | None = None,
          overall: float = 1e-3) -> EpochStats:
    """A trajectory with the given losses, overall update ratio and constant per-tensor update
    ratios and mean |grad| (1e-2 where not given)."""
    n = len(loss)
    grads = grads or {}
    extra = {f"grad_abs_mean/{t}": np.full(n, grads.get(t, 1e-2)) for t in ratios}
    extra.update({f"update_ratio/{t}": np.full(n, r) for t, r in ratios.items()})
    ones = np.full(n, overall)
    return EpochStats(0, np.asarray(loss, dtype=float), ones.copy(), ones.copy(), ones,
                      np.ones(n), extra=extra)


@dataclass(frozen=True)
class Case:
    name: str
    loss: np.ndarray
    ratios: dict[str, float]
    verdict: str
    stalled: tuple[str, ...]
    reason_has: str
    grads: dict[str, float] | None = None
    overall: float = 1e-3


FALLING = np.geomspace(1.0, 1e-3, N)
CASES = [
    Case("first-layer-stalled", FALLING, {"0.weight": 1e-9, "0.bias": 2e-3, "2.weight": 1e-3},
         "healthy", ("0.weight",),
         "; 1 of 3 tensors stalled: 0.weight moves 1.0e-09 of its size per step while 0.bias "
         "moves 2.0e-03 (0.weight: mean |grad| 1.0e-09 against 1.0e-02; check what scales "
         "that gradient", grads={"0.weight": 1e-9}),
    Case("large-values", FALLING, {"embed": 1e-8, "head": 1e-3}, "healthy", ("embed",),
         "(embed: mean |grad| 1.0e-02 against 1.0e-02; its values are large for their "
         "updates"),
    Case("one-does-not-move", FALLING, {"a": 0.0, "b": 1e-3}, "healthy", ("a",),
         "1 of 2 tensors stalled: a does not move at all while b moves 1.0e-03"),
    Case("several-slowest-first", FALLING,
         {"t0": 1e-3, "t1": 5e-8, "t2": 1e-9, "t3": 0.0, "t4": 1e-7}, "healthy",
         ("t3", "t2", "t1", "t4"),
         "4 of 5 tensors stalled: t3 does not move at all, t2 1.0e-09, t1 5.0e-08 and 1 more "
         "while t0 moves 1.0e-03"),
    Case("slow-run-names-them-too", np.linspace(1.0, 0.97, N), {"a": 1e-9, "b": 1e-3},
         "slow", ("a",), "the loss fell only 3.0%", overall=5e-5),
    Case("all-stalled-says-it-once", np.linspace(1.0, 0.99999, N), {"a": 1e-9, "b": 1e-8},
         "stalled", (), "parameters move 1.0e-09", overall=1e-9),
    Case("none-stalled", FALLING, {"a": 1e-4, "b": 1e-3}, "healthy", (), "median update"),
    Case("diverged-stays-short", np.geomspace(1.0, 1e5, N), {"a": 1e-9, "b": 1e-1},
         "diverged", (), "the loss grew"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_stalled_tensors_table(case: Case) -> None:
    verdict = judge(stats(case.loss, case.ratios, case.grads, case.overall))
    assert verdict.name == case.verdict, verdict.reason
    assert verdict.tensors == case.stalled
    assert case.reason_has in verdict.reason
    assert ("tensors stalled" in verdict.reason) == bool(case.stalled)
    assert "\n" not in verdict.reason


def test_the_stalled_band_is_the_thresholds_one() -> None:
    history = stats(FALLING, {"a": 1e-5, "b": 1e-3})
    assert judge(history).tensors == ()
    assert judge(history, thresholds=Thresholds(stalled_ratio=1e-4)).tensors == ("a",)


def test_a_first_layer_with_a_nearly_zero_gradient_is_named() -> None:
    result = train(grad_scaled(1e-12), Hyperparams("sgd", 0.5), 40)
    verdict = result.verdict
    assert verdict is not None and result.status == "complete"
    assert verdict.name == "healthy", verdict.reason  # the loss falls: the rest learns
    assert verdict.tensors == ("first.weight",)
    assert "1 of 4 tensors stalled: first.weight moves" in verdict.reason
    assert "check what scales that gradient" in verdict.reason
    ratios = {t: float(np.median(v))
              for t, v in result.history.per_tensor("update_ratio").items()}
    assert ratios["first.weight"] < 1e-12 < 1e-3 < ratios["last.weight"]


def test_the_same_model_with_its_true_gradient_names_no_tensor() -> None:
    verdict = train(grad_scaled(1.0), Hyperparams("sgd", 0.5), 40).verdict
    assert verdict is not None and verdict.tensors == ()
    assert "tensors stalled" not in verdict.reason
