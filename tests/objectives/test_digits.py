"""The digits classifier: its parameters, its arguments and that it can be learned."""

from __future__ import annotations

import pytest
import torch

import objectives
from objectives import ObjectiveError
from objectives.digits import Digits

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("hidden", "shapes"),
    [
        (
            32,
            {
                "layer1.weight": (32, 64),
                "layer1.bias": (32,),
                "layer2.weight": (10, 32),
                "layer2.bias": (10,),
            },
        ),
        (
            5,
            {
                "layer1.weight": (5, 64),
                "layer1.bias": (5,),
                "layer2.weight": (10, 5),
                "layer2.bias": (10,),
            },
        ),
        (0, {"layer1.weight": (10, 64), "layer1.bias": (10,)}),
    ],
)
def test_hidden_sets_the_parameter_shapes(hidden: int, shapes: dict[str, tuple[int, ...]]) -> None:
    params = Digits(hidden=hidden).init_params(CPU)
    assert {key: tuple(value.shape) for key, value in params.items()} == shapes


def test_float32_dtype_gives_float32_params_and_loss() -> None:
    objective = objectives.build("digits", {"dtype": "float32"})
    params = objective.init_params(CPU)
    assert {value.dtype for value in params.values()} == {torch.float32}
    assert objective.loss(params).dtype == torch.float32


def test_seed_changes_the_initial_weights() -> None:
    first = Digits(seed=0).init_params(CPU)["layer1.weight"]
    assert not torch.equal(first, Digits(seed=1).init_params(CPU)["layer1.weight"])


def test_initial_accuracy_is_near_chance() -> None:
    objective = Digits()
    assert objective.accuracy(objective.init_params(CPU)) < 0.3


@pytest.mark.parametrize("hidden", [32, 0])
def test_200_epochs_of_adam_learn_the_test_split(hidden: int) -> None:
    objective = Digits(hidden=hidden)
    params = {key: value.requires_grad_() for key, value in objective.init_params(CPU).items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=0.01)
    for _ in range(200):
        optimizer.zero_grad()
        objective.loss(params).backward()
        optimizer.step()
    assert objective.accuracy(params, split="test") > 0.9
    assert objective.accuracy(params, split="train") > 0.9


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [
        ({"hidden": "-1"}, "objective-arg hidden", -1),
        ({"hidden": "wide"}, "objective-arg hidden", "wide"),
        ({"seed": "-3"}, "objective-arg seed", -3),
        ({"test_fraction": "0"}, "objective-arg test_fraction", 0.0),
        ({"test_fraction": "1.5"}, "objective-arg test_fraction", 1.5),
        ({"dtype": "float16"}, "objective-arg dtype", "float16"),
        ({"layers": "2"}, "objective-arg", "layers"),
    ],
)
def test_bad_arguments_name_the_field(args: dict[str, str], field: str, value: object) -> None:
    with pytest.raises(ObjectiveError) as caught:
        objectives.build("digits", args)
    assert caught.value.field == field
    assert caught.value.value == value


def test_accuracy_rejects_an_unknown_split() -> None:
    objective = Digits(hidden=0)
    with pytest.raises(ObjectiveError) as caught:
        objective.accuracy(objective.init_params(CPU), split="validation")
    assert caught.value.field == "split"
