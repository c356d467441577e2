"""The rebalance objective reproduces the seed article's numbers and validates its arguments."""

from __future__ import annotations

import pytest
import torch

import objectives
from objectives import ObjectiveError
from objectives.rebalance import Rebalance

CPU = torch.device("cpu")


def test_epoch_zero_matches_the_seed_article() -> None:
    objective = Rebalance()
    shares = objective.init_params(CPU)["shares"].requires_grad_()
    loss = objective.loss({"shares": shares})
    (grad,) = torch.autograd.grad(loss, shares)
    assert shares.mean().item() == pytest.approx(24.5626, abs=5e-5)
    assert loss.item() == pytest.approx(2.3874e-03, rel=5e-5)
    assert grad.abs().mean().item() == pytest.approx(1.1838e-05, rel=5e-5)


def test_plain_sgd_at_lr_001_barely_moves_in_10000_steps() -> None:
    objective = Rebalance()
    shares = objective.init_params(CPU)["shares"].requires_grad_()
    for _ in range(10_000):
        (grad,) = torch.autograd.grad(objective.loss({"shares": shares}), shares)
        with torch.no_grad():
            shares -= 0.01 * grad
    with torch.no_grad():
        final = objective.loss({"shares": shares}).item()
    assert shares.mean().item() == pytest.approx(24.5633, abs=5e-5)
    assert final == pytest.approx(2.3871e-03, rel=5e-5)


def test_float32_dtype_gives_float32_params_and_loss() -> None:
    objective = objectives.build("rebalance", {"dtype": "float32"})
    params = objective.init_params(CPU)
    assert params["shares"].dtype == torch.float32
    assert objective.loss(params).dtype == torch.float32


@pytest.mark.parametrize(("size", "cash_buffer"), [(2, 0.0), (8, 0.001), (16, 0.2)])
def test_size_and_cash_buffer_shape_the_target(size: int, cash_buffer: float) -> None:
    objective = objectives.build("rebalance", {"size": str(size), "cash_buffer": str(cash_buffer)})
    assert objective.init_params(CPU)["shares"].shape == (size,)
    target = objective._target  # type: ignore[attr-defined]
    assert target.sum().item() == pytest.approx(1.0)
    assert target[-1].item() == pytest.approx(cash_buffer)
    positions = torch.full((size - 1,), (1 - cash_buffer) / (size - 1), dtype=target.dtype)
    assert torch.allclose(target[:-1], positions)


@pytest.mark.parametrize(
    ("spec", "args", "field", "value"),
    [
        ("rebalance", {"size": "1"}, "objective-arg size", 1),
        ("rebalance", {"size": "abc"}, "objective-arg size", "abc"),
        ("rebalance", {"dtype": "float16"}, "objective-arg dtype", "float16"),
        ("rebalance", {"cash_buffer": "1.5"}, "objective-arg cash_buffer", 1.5),
        ("rebalance", {"cash_buffer": "-0.1"}, "objective-arg cash_buffer", -0.1),
        ("rebalance", {"seed": "-1"}, "objective-arg seed", -1),
        ("rebalance", {"nosuch": "1"}, "objective-arg", "nosuch"),
        ("nosuch", {}, "objective", "nosuch"),
        ("nosuchmodule:x", {}, "objective", "nosuchmodule:x"),
        ("objectives.rebalance:Nope", {}, "objective", "objectives.rebalance:Nope"),
    ],
)
def test_bad_arguments_name_the_field(
    spec: str, args: dict[str, str], field: str, value: object
) -> None:
    with pytest.raises(ObjectiveError) as caught:
        objectives.build(spec, args)
    assert caught.value.field == field
    assert caught.value.value == value
    assert caught.value.allowed
