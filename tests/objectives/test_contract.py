"""One contract suite, run against every registered objective, the user examples, a data-set
objective and the full-batch digits MLP of the tests."""

from __future__ import annotations

import pytest
import torch

import objectives
from objectives import Objective

CPU = torch.device("cpu")
SPECS = [*objectives.available(), "examples.my_objective:objective",
         "examples.dataset_objective:objective", "tests.minibatch_objectives:tiny",
         "tests.toy_objectives:full_batch_digits"]


@pytest.fixture(params=SPECS)
def spec(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objective(spec: str) -> Objective:
    return objectives.build(spec)


def _assert_same(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key


def test_follows_the_protocol(objective: Objective) -> None:
    assert isinstance(objective, Objective)
    assert isinstance(objective.name, str) and objective.name
    assert isinstance(objective.default_epochs, int)
    assert not isinstance(objective.default_epochs, bool)
    assert objective.default_epochs > 0


def test_init_params_are_deterministic(objective: Objective) -> None:
    _assert_same(objective.init_params(CPU), objective.init_params(CPU))


def test_init_params_are_independent_copies(objective: Objective) -> None:
    first = objective.init_params(CPU)
    expected = {key: value.clone() for key, value in first.items()}
    for value in first.values():
        value.add_(1.0)
    _assert_same(objective.init_params(CPU), expected)


def test_init_params_are_finite_floating_tensors(objective: Objective) -> None:
    params = objective.init_params(CPU)
    assert params
    for key, value in params.items():
        assert isinstance(value, torch.Tensor), key
        assert value.is_floating_point(), key
        assert value.device == CPU, key
        assert torch.isfinite(value).all(), key


def test_loss_is_a_finite_scalar(objective: Objective) -> None:
    loss = objective.loss(objective.init_params(CPU))
    assert loss.ndim == 0
    assert loss.is_floating_point()
    assert torch.isfinite(loss)


def test_loss_is_differentiable_in_every_parameter(objective: Objective) -> None:
    params = {key: value.requires_grad_() for key, value in objective.init_params(CPU).items()}
    grads = torch.autograd.grad(objective.loss(params), list(params.values()))
    for key, grad in zip(params, grads):
        assert grad.shape == params[key].shape, key
        assert torch.isfinite(grad).all(), key
    assert any(grad.abs().sum() > 0 for grad in grads)


def test_loss_is_a_pure_function_of_params(objective: Objective) -> None:
    params = objective.init_params(CPU)
    before = {key: value.clone() for key, value in params.items()}
    first = objective.loss(params)
    objective.loss({key: value + 0.01 for key, value in params.items()})
    assert torch.equal(objective.loss(params), first)
    _assert_same(params, before)


@pytest.mark.parametrize(
    ("optimizer", "lr"), [(torch.optim.Adam, 0.01), (torch.optim.SGD, 1e-3)], ids=["adam", "sgd"]
)
def test_a_few_optimizer_steps_reduce_the_loss(
    objective: Objective, optimizer: type[torch.optim.Optimizer], lr: float
) -> None:
    params = {key: value.requires_grad_() for key, value in objective.init_params(CPU).items()}
    step = optimizer(list(params.values()), lr=lr)
    initial = objective.loss(params).item()
    for _ in range(5):
        step.zero_grad()
        objective.loss(params).backward()
        step.step()
    assert objective.loss(params).item() < initial


def test_arguments_rebuild_the_same_objective(spec: str, objective: Objective) -> None:
    arguments = {key: str(value) for key, value in objective.arguments().items()}
    rebuilt = objectives.build(spec, arguments)
    assert rebuilt.arguments() == objective.arguments()
    params = rebuilt.init_params(CPU)
    _assert_same(params, objective.init_params(CPU))
    assert torch.equal(rebuilt.loss(params), objective.loss(params))
