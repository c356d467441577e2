"""The digits objectives: their splits, parameters and arguments, mini-batch training that
learns the held-out test split, and one-line errors for bad arguments."""

from __future__ import annotations

import pytest
import torch

import objectives
from objectives import ObjectiveError, is_minibatch
from objectives.digits import Digits, DigitsObjective, load_splits
from objectives.digits_cnn import DigitsCNN

CPU = torch.device("cpu")
IMAGES = 1797


def test_the_splits_partition_the_images_stratified_and_standardised() -> None:
    splits = load_splits(seed=0, test_fraction=0.25, val_fraction=0.15)
    sizes = [len(inputs) for inputs, _ in (splits.train, splits.validation, splits.test)]
    assert sum(sizes) == IMAGES
    assert sizes[2] == pytest.approx(0.25 * IMAGES, abs=1)
    assert sizes[1] == pytest.approx(0.15 * IMAGES, abs=1)
    for inputs, targets in (splits.train, splits.validation, splits.test):
        assert inputs.dtype == torch.float32 and inputs.shape[1:] == (64,)
        assert set(targets.tolist()) == set(range(10))  # every class in every split
    train = splits.train[0]
    torch.testing.assert_close(train.mean(dim=0), torch.zeros(64), atol=1e-5, rtol=0)
    images = load_splits(shape=(1, 8, 8)).test[0]
    assert torch.equal(images.flatten(1), splits.test[0])
    other = load_splits(seed=1)
    assert not torch.equal(other.test[1], splits.test[1])


@pytest.mark.parametrize(("hidden", "shapes"), [
    (64, {"0.weight": (64, 64), "0.bias": (64,), "3.weight": (10, 64), "3.bias": (10,)}),
    (5, {"0.weight": (5, 64), "0.bias": (5,), "3.weight": (10, 5), "3.bias": (10,)}),
    (0, {"0.weight": (10, 64), "0.bias": (10,)}),
])
def test_hidden_sets_the_parameter_shapes(hidden: int, shapes: dict[str, tuple[int, ...]]) -> None:
    params = Digits(hidden=hidden).init_params(CPU)
    assert {key: tuple(value.shape) for key, value in params.items()} == shapes


@pytest.mark.parametrize("spec", ["digits", "digits-cnn"])
def test_they_train_in_mini_batches_validated_each_epoch(spec: str) -> None:
    objective = objectives.build(spec, {"batch_size": "100"})
    assert isinstance(objective, DigitsObjective) and is_minibatch(objective)
    assert objective.rows == len(load_splits().train[0])
    assert objective.steps_per_epoch == -(-objective.rows // 100)
    scores = objective.validate(objective.init_params(CPU), objective.start_trial(CPU))
    assert set(scores) == {"val_loss", "val_accuracy"}


@pytest.mark.parametrize("spec", ["digits", "digits-cnn"])
def test_float32_is_the_default_float64_an_argument(spec: str) -> None:
    for args, want in (({}, torch.float32), ({"dtype": "float64"}, torch.float64)):
        objective = objectives.build(spec, args)
        params = objective.init_params(CPU)
        assert {value.dtype for value in params.values()} == {want}
        assert objective.loss(params).dtype == want


@pytest.mark.parametrize("cls", [Digits, DigitsCNN])
def test_seed_changes_the_initial_weights_and_leaves_the_global_stream(
        cls: type[DigitsObjective]) -> None:
    state = torch.random.get_rng_state()
    first = cls(seed=0).init_params(CPU)["0.weight"]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first, cls(seed=0).init_params(CPU)["0.weight"])
    assert not torch.equal(first, cls(seed=1).init_params(CPU)["0.weight"])


@pytest.mark.parametrize("cls", [Digits, DigitsCNN])
def test_initial_accuracy_is_near_chance(cls: type[DigitsObjective]) -> None:
    objective = cls()
    scores = objective.evaluate(objective.init_params(CPU))
    assert set(scores) == {"train_accuracy", "test_accuracy"}
    assert scores["test_accuracy"] < 0.3


def train_epochs(objective: DigitsObjective, epochs: int,
                 lr: float = 0.01) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """A plain Adam loop over the objective's batches; the final params and validation."""
    params = {key: value.requires_grad_() for key, value in objective.init_params(CPU).items()}
    state = objective.start_trial(CPU)
    optimizer = torch.optim.Adam(list(params.values()), lr=lr)
    for epoch in range(epochs):
        for batch in objective.batches(epoch, CPU):
            optimizer.zero_grad()
            objective.batch_loss(params, state, batch).backward()
            optimizer.step()
    validation = {key: value.item() for key, value in objective.validate(params, state).items()}
    return {key: value.detach() for key, value in params.items()}, validation


@pytest.mark.parametrize(("cls", "epochs"), [(Digits, 5), (DigitsCNN, 3)])
def test_a_few_epochs_of_adam_learn_the_held_out_splits(cls: type[DigitsObjective],
                                                        epochs: int) -> None:
    objective = cls()
    params, validation = train_epochs(objective, epochs)
    scores = objective.evaluate(params)
    assert validation["val_accuracy"] > 0.9
    assert scores["test_accuracy"] > 0.9 and scores["train_accuracy"] > 0.9
    assert objective.accuracy(params, "test") == scores["test_accuracy"]
    assert objective.accuracy(params, "validation") == pytest.approx(
        validation["val_accuracy"], abs=0.02)  # BatchNorm: train statistics vs running ones


@pytest.mark.parametrize(("spec", "args", "field", "value"), [
    ("digits", {"hidden": "-1"}, "objective-arg hidden", -1),
    ("digits", {"hidden": "wide"}, "objective-arg hidden", "wide"),
    ("digits", {"seed": "-3"}, "objective-arg seed", -3),
    ("digits", {"batch_size": "0"}, "objective-arg batch_size", 0),
    ("digits", {"batch_size": "-8"}, "objective-arg batch_size", -8),
    ("digits", {"test_fraction": "0"}, "objective-arg test_fraction", 0.0),
    ("digits", {"test_fraction": "0.6"}, "objective-arg test_fraction", 0.6),
    ("digits", {"val_fraction": "0"}, "objective-arg val_fraction", 0.0),
    ("digits", {"val_fraction": "0.7"}, "objective-arg val_fraction", 0.7),
    ("digits", {"dropout": "1"}, "objective-arg dropout", 1.0),
    ("digits", {"dtype": "float16"}, "objective-arg dtype", "float16"),
    ("digits", {"layers": "2"}, "objective-arg", "layers"),
    ("digits-cnn", {"channels": "0"}, "objective-arg channels", 0),
    ("digits-cnn", {"dropout": "-0.1"}, "objective-arg dropout", -0.1),
    ("digits-cnn", {"batch_size": "0"}, "objective-arg batch_size", 0),
    ("digits-cnn", {"hidden": "8"}, "objective-arg", "hidden"),
])
def test_bad_arguments_name_the_field(spec: str, args: dict[str, str], field: str,
                                      value: object) -> None:
    with pytest.raises(ObjectiveError) as caught:
        objectives.build(spec, args)
    assert caught.value.field == field
    assert caught.value.value == value
    assert "\n" not in str(caught.value)


def test_accuracy_rejects_an_unknown_split() -> None:
    objective = Digits(hidden=0)
    with pytest.raises(ObjectiveError) as caught:
        objective.accuracy(objective.init_params(CPU), split="holdout")
    assert caught.value.field == "split"
