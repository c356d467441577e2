"""Mixed precision (``sweeps.training.precision``): which devices and objectives take bf16 and
fp16, the module running at the autocast dtype while the trial stays float32, and fp16's loss
scaling (small gradients kept, overflowing steps skipped)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from objectives import ObjectiveError
from objectives.dataset import DatasetObjective, accuracy
from objectives.rebalance import Rebalance
from sweeps.checks import check_precision
from sweeps.errors import UsageError
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import TrainResult, train
from sweeps.training.precision import at_precision

try:
    from minibatch_objectives import HELD_OUT, data, tiny
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import HELD_OUT, data, tiny

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU here may run it")


def float32(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return pair[0].float(), pair[1]


def mlp(scale: float = 1.0) -> DatasetObjective:
    """``tiny``'s task in float32 on linear, ReLU, linear; its loss times ``scale``."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return scale * nn.functional.cross_entropy(outputs, targets)

    return DatasetObjective(net, float32(data(0)), batch_size=8, loss_fn=loss_fn,
                            validation=float32(data(1, HELD_OUT)),
                            metrics={"accuracy": accuracy})


@pytest.mark.parametrize(("precision", "device", "refused"), [
    ("fp32", "cpu", None),
    ("bf16", "cpu", None),
    ("fp16", "cpu", None),
    ("fp8", "cpu", "use one of fp32, bf16, fp16"),
    ("BF16", "cpu", "use one of fp32, bf16, fp16"),
    pytest.param("fp32", "cuda", None),
    pytest.param("bf16", "cuda", "no native bfloat16", marks=NO_CUDA),
    pytest.param("fp16", "cuda:0", "cannot autocast to fp16 on device cuda:0", marks=NO_CUDA),
])
def test_a_precision_is_taken_where_the_device_runs_it(precision: str, device: str,
                                                       refused: str | None) -> None:
    if refused is None:
        check_precision(precision, device)
        return
    with pytest.raises(UsageError) as caught:
        check_precision(precision, device)
    assert (caught.value.field, caught.value.value) == ("precision", precision)
    assert refused in caught.value.allowed


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_full_batch_objective_is_refused_autocast(precision: str) -> None:
    with pytest.raises(UsageError) as caught:
        at_precision(Rebalance(), precision)
    assert (caught.value.field, caught.value.value) == ("precision", precision)
    assert "rebalance" in caught.value.allowed and "use fp32" in caught.value.allowed


def test_fp32_trains_the_objective_itself_and_bf16_a_copy_of_it() -> None:
    objective = mlp()
    assert at_precision(objective, "fp32") is objective
    copy = at_precision(objective, "bf16")
    assert isinstance(copy, DatasetObjective)
    assert (copy.autocast, objective.autocast) == (torch.bfloat16, None)


def test_a_float64_module_is_refused_autocast() -> None:
    with pytest.raises(ObjectiveError) as caught:
        tiny().with_autocast(torch.bfloat16)
    assert caught.value.value == "float64"


def test_bf16_runs_the_module_in_bf16_and_keeps_the_trial_float32() -> None:
    objective = mlp()
    seen: set[torch.dtype] = set()

    def record(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        seen.add(output.dtype)

    handle = objective._module[0].register_forward_hook(record)
    try:
        result = train(objective.with_autocast(torch.bfloat16), Hyperparams("adam", 0.01), 2)
    finally:
        handle.remove()
    assert seen == {torch.bfloat16}  # training steps and validation alike
    assert result.status == "complete" and result.params is not None
    assert {p.dtype for p in result.params.values()} == {torch.float32}
    assert np.isfinite(result.history.metric("val_loss")).all()


def first_layer_gradient(result: TrainResult) -> float:
    """The first epoch's mean |grad| of the first layer's weight."""
    return float(result.history.metric("grad_abs_mean/0.weight")[0])


def trained(make: Callable[[], DatasetObjective], dtype: torch.dtype, epochs: int = 1,
            lr: float = 0.1) -> TrainResult:
    return train(make().with_autocast(dtype), Hyperparams("sgd", lr), epochs)


def test_fp16_scales_the_loss_so_that_small_gradients_reach_the_first_layer() -> None:
    """A loss scaled by 1e-8 has gradients below float16's smallest number: unscaled they
    would be zeros; scaled, the first layer gets the gradient bf16 (float32's exponent
    range) gets."""
    tiny_loss = lambda: mlp(scale=1e-8)  # noqa: E731
    wanted = first_layer_gradient(trained(tiny_loss, torch.bfloat16))
    assert wanted > 0
    got = first_layer_gradient(trained(tiny_loss, torch.float16))
    assert got == pytest.approx(wanted, rel=0.05)


def test_fp16_skips_the_steps_whose_gradients_overflow_and_trains_on() -> None:
    """A loss scaled by 1e4 overflows float16 at the initial scale (2**16): the first steps
    are skipped, the scale halving each time, until the gradients fit (the lr is 1e4 times
    smaller, for the same steps as an lr of 0.1 on the plain loss)."""
    result = trained(lambda: mlp(scale=1e4), torch.float16, epochs=4, lr=1e-5)
    assert result.status == "complete", result.failure
    updates = result.history.metric("update_abs_mean")
    assert updates[0] == 0.0  # the first epoch's 5 steps skipped
    assert (updates[2:] > 0).all()
    assert np.isfinite(result.history.metric("grad_abs_mean")).all()
