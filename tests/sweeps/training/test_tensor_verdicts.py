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
    Case("moved-from-zeros-is-moving", FALLING, {"a": np.inf, "b": 1e-3, "c": 1e-9}, "healthy",
         ("c",), "1 of 3 tensors stalled: c moves 1.0e-09 of its size per step while b moves "
                 "1.0e-03"),
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


# -- faults by layer, from each tensor's mean |grad| -----------------------------------------

FLAT = np.full(N, np.log(4))  # a loss that stays at chance for four classes
Value = float | np.ndarray


def layered(loss: np.ndarray, grads: dict[str, Value], ratios: dict[str, Value] | None = None,
            overall: float = 1e-2, grad: Value = 1e-2, theta: float = 1.0) -> EpochStats:
    """A trajectory with per-tensor mean |grad| ``grads`` and update ratios ``ratios`` (1e-2,
    an adaptive optimizer's, where not given): constants or one value an epoch. The overall
    update ratio is ``overall``, the overall mean |grad| ``grad``, the parameters' mean size
    ``theta``."""
    n = len(loss)
    ratios = ratios or {}
    extra = {f"grad_abs_mean/{t}": np.broadcast_to(np.asarray(g, dtype=float), n).copy()
             for t, g in grads.items()}
    extra.update({f"update_ratio/{t}": np.full(n, ratios.get(t, 1e-2)) for t in grads})
    ratio = np.full(n, overall)
    return EpochStats(0, np.asarray(loss, dtype=float),
                      np.broadcast_to(np.asarray(grad, dtype=float), n).copy(),
                      ratio * theta, ratio, np.ones(n), extra=extra)


@dataclass(frozen=True)
class Fault:
    name: str
    stats: EpochStats
    verdict: str
    tensors: tuple[str, ...]
    reason_has: str


MLP = ("0.weight", "0.bias", "2.weight", "2.bias")
DEEP = tuple(f"{2 * i}.{kind}" for i in range(6) for kind in ("weight", "bias"))
FAULTS = [
    Fault("dead-relus", layered(FLAT, dict(zip(MLP, (0.0, 0.0, 0.0, 5e-2))),
                                {"0.weight": 0.0, "0.bias": 0.0, "2.weight": 0.0}, overall=5e-6),
          "flat", ("0.weight", "0.bias", "2.weight"),
          "flat: the loss stays at chance (1.39, ln 4 = 1.39: a uniform guess over 4 classes): "
          "a layer gets no useful gradient, which no learning rate fixes; 3 of 4 tensors "
          "stalled: 0.weight does not move at all, 0.bias not at all, 2.weight not at all while "
          "2.bias moves 1.0e-02 (0.weight: mean |grad| 0.0e+00 against 5.0e-02; check what "
          "scales that gradient, e.g. inputs, initialisation, dead units, a bias before a "
          "normalisation); no gradient at all in 0.weight, 0.bias, 2.weight: 2.weight's inputs "
          "are zero for every example while 2.bias still learns, so the units feeding it are "
          "dead (ReLUs off for every input); check the initialisation and bias of 0.weight, "
          "0.bias and the input scale"),
    Fault("units-that-die", layered(FLAT, {"0.weight": np.where(np.arange(N) < 30, 1e-2, 0.0),
                                           "0.bias": np.where(np.arange(N) < 30, 1e-2, 0.0),
                                           "2.weight": np.where(np.arange(N) < 30, 1e-2, 0.0),
                                           "2.bias": 5e-2}),
          "flat", ("0.weight", "0.bias", "2.weight"), "no gradient at all in 0.weight, 0.bias, "
                                                      "2.weight since epoch 30: "),
    Fault("a-detached-layer", layered(FALLING, dict(zip(("first.weight", "first.bias",
                                                         "last.weight", "last.bias"),
                                                        (0.0, 0.0, 1e-2, 2e-2)))),
          "healthy", ("first.weight", "first.bias"),
          "; no gradient at all in first.weight, first.bias while the rest learns: a frozen or "
          "detached layer (.detach(), torch.no_grad() or requires_grad=False in forward)"),
    Fault("a-blind-first-layer-under-adam",
          layered(FLAT, dict(zip(MLP, (2e-8, 5e-3, 4e-3, 6e-2)))), "flat", ("0.weight",),
          "; 0.weight gets a mean |grad| of 2.0e-08, under 0.001 of the largest (6.0e-02 in "
          "2.bias): nearly blind to the loss, though an adaptive optimizer's normalised steps "
          "still move it; check the input scale (it is the first layer)"),
    Fault("vanishing", layered(FLAT, {t: 10.0 ** (-10 + 0.7 * i) for i, t in enumerate(DEEP)}),
          "flat", DEEP[:7],
          "; the gradient shrinks layer by layer toward the input, from 1.0e-03 (10.weight) to "
          "1.0e-10 (0.weight): vanishing gradients; 0.weight, 0.bias, 2.weight, 2.bias and 3 "
          "more get under 0.001 of the largest"),
    Fault("a-bias-before-a-normalisation",
          layered(FALLING, dict(zip(("0.weight", "0.bias", "1.weight", "1.bias"),
                                    (3e-3, 6e-9, 5e-3, 4e-3)))), "healthy", (),
          "; 0.bias gets next to no gradient while its weight does: a bias before a "
          "normalisation, which cancels it (harmless; bias=False drops it)"),
    Fault("exploding", layered(np.geomspace(1.0, 1e2, N), dict(zip(MLP, (1.0,) * 4)),
                               grad=np.geomspace(1e-1, 1e3, N)), "unstable", (),
          "; exploding gradients: mean |grad| grew 1e+04x in 199 epochs (0.1 -> 1e+03 at epoch "
          "199), largest in 0.weight; check the initialisation scale, add normalisation or "
          "clip the gradient norm"),
    Fault("exploding-from-the-start", layered(FALLING, dict(zip(MLP, (1.0,) * 4)), grad=50.0,
                                              theta=0.5), "healthy", (),
          "; exploding gradients: mean |grad| 50 at epoch 0, 100 times the parameters' mean "
          "size (0.5)"),
    Fault("a-diverged-run-tells-only-of-the-explosion",
          layered(np.geomspace(1.0, 1e4, N), dict(zip(MLP, (0.0, 0.0, 1.0, 1.0))),
                  grad=np.geomspace(1e-1, 1e3, N)), "diverged", (),
          "the loss grew 1.0e+04x (1 -> 1e+04); try a smaller lr; exploding gradients"),
    Fault("healthy-layers", layered(FALLING, dict(zip(MLP, (8e-3, 6e-3, 1.5e-2, 1.8e-2)))),
          "healthy", (), "median update ratio 1.0e-02"),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_faults_by_layer_table(fault: Fault) -> None:
    verdict = judge(fault.stats)
    assert verdict.name == fault.verdict, verdict.reason
    assert verdict.tensors == fault.tensors, verdict.reason
    assert fault.reason_has in f"{verdict.name}: {verdict.reason}", verdict.reason
    assert "\n" not in verdict.reason


def test_each_layer_fault_says_whether_a_learning_rate_could_fix_it() -> None:
    from sweeps.training.verdicts import layer_faults

    kinds = {f.name: {(x.kind, x.structural) for x in layer_faults(f.stats)} for f in FAULTS}
    assert kinds["dead-relus"] == {("dead", True)}
    assert kinds["a-blind-first-layer-under-adam"] == {("blind", True)}
    assert kinds["vanishing"] == {("vanishing", True)}
    assert kinds["a-bias-before-a-normalisation"] == {("cancelled", False)}
    assert kinds["exploding"] == {("exploding", False)}
    assert kinds["healthy-layers"] == set()
