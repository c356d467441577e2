"""The learning-rate intervals objectives declare (the optional ``lr_ranges``)."""

from __future__ import annotations

import pytest
from torch import nn

import objectives
from objectives import ObjectiveError
from objectives.dataset import DatasetObjective
from sweeps.optim.optimizers import OPTIMIZERS

try:  # tests/ as a plain folder (pytest puts it on sys.path) or as a package
    from minibatch_objectives import data, model, tiny
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import data, model, tiny

SGD_FAMILY, ADAPTIVE = (1e-3, 1e7), (1e-5, 1e2)  # the seed sweep's intervals, unchanged


def test_rebalance_declares_the_seed_sweeps_intervals() -> None:
    assert objectives.build("rebalance", {}).lr_ranges == {
        "sgd": SGD_FAMILY, "momentum": SGD_FAMILY, "nesterov": SGD_FAMILY, "adam": ADAPTIVE,
        "adamw": ADAPTIVE, "rmsprop": ADAPTIVE, "adagrad": ADAPTIVE}


@pytest.mark.parametrize("name", ["digits", "digits-cnn"])
def test_the_digits_objectives_declare_an_interval_for_every_optimizer(name: str) -> None:
    ranges = objectives.build(name, {"hidden": "8"} if name == "digits" else {}).lr_ranges
    assert ranges.keys() == OPTIMIZERS.keys()
    for optimizer, (low, high) in ranges.items():
        assert 0 < low < high <= 1.0, optimizer  # nothing like the seed's 1e7
        assert high / low >= 10**2, optimizer  # room to search


def _with(lr_ranges: object) -> DatasetObjective:
    return DatasetObjective(model(), data(0), batch_size=8,
                            loss_fn=nn.functional.cross_entropy,
                            lr_ranges=lr_ranges)  # type: ignore[arg-type]


def test_a_dataset_objective_keeps_its_intervals_as_float_pairs() -> None:
    assert tiny().lr_ranges is None
    assert _with({}).lr_ranges is None
    assert _with({"sgd": (1, 2), "adam": [1e-4, 0.1]}).lr_ranges == {"sgd": (1.0, 2.0),
                                                                     "adam": (1e-4, 0.1)}


@pytest.mark.parametrize(("bounds", "shown"), [
    ((0.1, 0.01), "sgd: (0.1, 0.01)"), ((0, 1), "sgd: (0, 1)"), ((1, 1), "sgd: (1, 1)"),
    ((1,), "sgd: (1,)"), ("fast", "sgd: fast"),
])
def test_a_bad_interval_names_the_field_and_the_value(bounds: object, shown: str) -> None:
    with pytest.raises(ObjectiveError) as caught:
        _with({"sgd": bounds})
    assert (caught.value.field, caught.value.value) == ("lr_ranges", shown)
