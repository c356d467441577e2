"""The one table of sub-parameter defaults and search ranges: its values (SPEC section 7), that
every builder gets its defaults from it, and that reading it does not import torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from sweeps.optim import (
    OPTIMIZERS,
    SCHEDULERS,
    Decay,
    Length,
    SubParam,
    build_optimizer,
    build_scheduler,
)
from sweeps.optim.subparams import settings

ROOT = Path(__file__).resolve().parents[3]
EPOCHS = 200
PARAMS = [*(p for spec in OPTIMIZERS.values() for p in spec.params),
          *(p for spec in SCHEDULERS.values() for p in spec.params)]
# name: (default, low, high) for a run of EPOCHS epochs
AT_200 = {
    "momentum": (0.9, 0.5, 0.99),
    "weight_decay": (0.01, 1e-6, 1e-1),
    "step_size": (50, 10, 100),
    "step_gamma": (0.5, 0.1, 0.9),
    "exp_gamma": (0.01 ** (1 / 200), 0.001 ** (1 / 200), 0.5 ** (1 / 200)),
    "pct_start": (0.3, 0.05, 0.5),
    "plateau_factor": (0.5, 0.1, 0.9),
    "plateau_patience": (10, 2, 20),
}


def test_table_holds_every_default_and_range() -> None:
    assert {p.name: (p.default_for(EPOCHS), *p.bounds(EPOCHS)) for p in PARAMS} == AT_200


def test_a_name_means_one_sub_parameter_everywhere() -> None:
    by_name: dict[str, SubParam] = {}
    for param in PARAMS:
        assert by_name.setdefault(param.name, param) == param, param.name


@pytest.mark.parametrize("epochs", [1, 2, 7, 100, 10_000])
@pytest.mark.parametrize("param", PARAMS, ids=lambda p: p.name)
def test_each_default_lies_in_its_search_range(param: SubParam, epochs: int) -> None:
    low, high = param.bounds(epochs)
    assert low <= param.default_for(epochs) <= high
    if param.integer:
        assert low >= 1 and all(v == int(v) for v in (low, high, param.default_for(epochs)))


@pytest.mark.parametrize(("value", "epochs", "expected"), [
    (Length(4), 3, 1), (Length(4), 8, 2), (Length(4), 10_001, 2500),
    (Decay(0.01), 1, 0.01), (Decay(0.01), 2, 0.1), (Decay(0.25), 0, 0.25),
])
def test_values_relative_to_the_run(value: Length | Decay, epochs: int,
                                    expected: float) -> None:
    assert value.at(epochs) == pytest.approx(expected, rel=1e-15)


def test_a_default_that_scales_needs_the_epochs() -> None:
    step_size = SubParam("step_size", Length(4), Length(20), Length(2), integer=True)
    with pytest.raises(ValueError, match="step_size"):
        step_size.default_for(None)
    assert settings([step_size], {"step_size": 7.0}) == {"step_size": 7.0}


@pytest.mark.parametrize("optimizer", [n for n, s in OPTIMIZERS.items() if s.params])
def test_optimizers_are_built_with_the_tables_defaults(optimizer: str) -> None:
    built = build_optimizer(optimizer, [torch.zeros(1, requires_grad=True)], 0.1, {})
    group = built.param_groups[0]
    for param in OPTIMIZERS[optimizer].params:
        assert group[param.name] == AT_200[param.name][0]


def test_schedulers_are_built_with_the_tables_defaults() -> None:
    def build(name: str) -> tuple[torch.optim.Optimizer, Any]:
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        return optimizer, build_scheduler(name, optimizer, EPOCHS, {})

    step, exponential, plateau = (build(name)[1] for name in ("step", "exponential", "plateau"))
    assert (step.step_size, step.gamma) == (50, 0.5)
    assert exponential.gamma == AT_200["exp_gamma"][0]
    assert (plateau.factor, plateau.patience) == (0.5, 10)
    optimizer, onecycle = build("onecycle")
    lrs = []
    for _ in range(EPOCHS):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        onecycle.step()
    assert lrs.index(max(lrs)) == 0.3 * EPOCHS - 1  # pct_start 0.3
    assert build("none")[1] is None


def test_options_override_the_defaults() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    step = build_scheduler("step", optimizer, EPOCHS, {"step_size": 3.0, "step_gamma": 0.1})
    assert (step.step_size, step.gamma) == (3, 0.1)
    rmsprop = build_optimizer("rmsprop", [torch.zeros(1, requires_grad=True)], 0.1,
                              {"momentum": 0.7})
    assert rmsprop.param_groups[0]["momentum"] == 0.7


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, sweeps.optim; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"
