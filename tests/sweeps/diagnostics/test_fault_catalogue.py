"""The fault catalogue: each fault of ``tests.sweeps.diagnostics.faults`` (a user's bug built
into a small model) trained as a trial is, and the verdict's label and named tensors checked
against the one right reading; healthy runs of the usual optimizers and schedulers stay
``healthy`` and name nothing.

Each run is a dozen or so epochs of a few batches (the whole catalogue takes seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from objectives import Objective
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from tests.sweeps.diagnostics import faults

DEAD = ("0.weight", "0.bias", "2.weight")
VANISHING = tuple(f"{2 * i}.{kind}" for i in range(9) for kind in ("weight", "bias"))


@dataclass(frozen=True)
class Entry:
    name: str
    objective: Callable[[], Objective]
    hp: Hyperparams
    verdict: str  # the label
    tensors: tuple[str, ...]  # the tensors it names
    reason_has: str  # what the reason must say


CATALOGUE = [
    Entry("inputs-scaled-by-1e-6-adam", faults.input_scale, Hyperparams("adam", 1e-2), "flat",
          ("0.weight",), "0.weight gets a mean |grad| of"),
    Entry("inputs-scaled-by-1e-6-sgd", faults.input_scale, Hyperparams("sgd", 0.1), "flat",
          ("0.weight",), "1 of 4 tensors stalled: 0.weight moves"),
    Entry("dead-relus-adam", faults.dead_relu, Hyperparams("adam", 1e-2), "flat", DEAD,
          "2.weight's inputs are zero for every example while 2.bias still learns"),
    Entry("dead-relus-sgd", faults.dead_relu, Hyperparams("sgd", 0.1), "flat", DEAD,
          "so the units feeding it are dead"),
    Entry("shuffled-labels", faults.shuffled_labels, Hyperparams("adam", 1e-2), "memorizing",
          (), "check that the labels match their inputs"),
    Entry("overfitting", faults.overfit, Hyperparams("adam", 1e-2), "overfitting", (),
          "the gap grows"),
    Entry("lr-too-high", faults.healthy, Hyperparams("adam", 1.0), "unstable", (),
          "try a smaller lr"),
    Entry("lr-too-low", faults.healthy, Hyperparams("sgd", 1e-7), "stalled", (),
          "x larger lr"),
    Entry("exploding-gradients", faults.exploding, Hyperparams("sgd", 3e-3), "diverged", (),
          "exploding gradients: mean |grad| grew"),
    Entry("vanishing-gradients", faults.vanishing, Hyperparams("adam", 1e-2), "flat",
          VANISHING, "vanishing gradients"),
    Entry("a-detached-layer", faults.frozen_layer, Hyperparams("adam", 1e-2), "healthy",
          ("first.weight", "first.bias"), "a frozen or detached layer"),
]
HEALTHY = [
    Hyperparams("sgd", 0.1),
    Hyperparams("momentum", 0.05, "step"),
    Hyperparams("nesterov", 0.05, "cosine"),
    Hyperparams("adam", 1e-2, "onecycle"),
    Hyperparams("adamw", 1e-2, "exponential"),
    Hyperparams("rmsprop", 3e-3, "plateau"),
    Hyperparams("adagrad", 0.1),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.name for e in CATALOGUE])
def test_each_fault_gets_its_label_and_tensors(entry: Entry) -> None:
    objective = entry.objective()
    verdict = train(objective, entry.hp, objective.default_epochs).verdict
    assert verdict is not None
    assert (verdict.name, verdict.tensors) == (entry.verdict, entry.tensors), verdict.reason
    assert entry.reason_has in verdict.reason, verdict.reason


@pytest.mark.parametrize("hp", HEALTHY, ids=[f"{h.optimizer}-{h.scheduler}" for h in HEALTHY])
def test_healthy_runs_are_healthy_and_name_no_tensor(hp: Hyperparams) -> None:
    objective = faults.healthy()
    verdict = train(objective, hp, objective.default_epochs).verdict
    assert verdict is not None
    assert (verdict.name, verdict.tensors) == ("healthy", ()), verdict.reason
