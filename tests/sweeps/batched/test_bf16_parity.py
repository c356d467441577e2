"""Batched trials under autocast: at bf16 each row of a stack follows its sequential run as far
as the arithmetic of the two programs is the same; fp16 trials do not stack.

Tolerances, from 4 epochs of the 7 rows below (every optimizer, four schedulers) on
initialisation seeds 0 to 3, one CPU thread:

- Layers without a bias (linear, ReLU, dropout, linear): the stack runs the sequential run's
  arithmetic, each matrix product at bfloat16 with float32 sums, so rows differ only where
  a sum in another order rounds to another bfloat16 number. ``EXACT = 1e-4`` on every
  per-epoch metric, the losses and each parameter; measured at most 2.2e-7 on the losses
  and 1.6e-5 on a parameter.
- Layers with a bias (the float32 parity test's conv and linear layers, each followed by
  BatchNorm, as the shipped digits CNN has): under ``vmap`` torch adds a bias in float32
  after the bfloat16 product, where the sequential run adds it in bfloat16 (the stacked
  layer's output is float32: pytorch/pytorch#192617), so the stack rounds its activations
  less often. Rows then stay within bfloat16 rounding carried through training of their
  sequential runs: ``LOOSE = 5e-2`` on the per-epoch training and validation losses;
  measured at most 2.2e-2 and 1.8e-2. The parameters are not compared: with adaptive
  optimizers the pre-BatchNorm biases go where rounding sends them even in float32
  (``test_float32_parity``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from objectives.dataset import DatasetObjective, accuracy
from sweeps.batched import train_batch
from sweeps.batched.minibatch import stackable
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import TrainResult, train

try:
    from minibatch_objectives import HELD_OUT, data
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import HELD_OUT, data

EPOCHS = 4
EXACT = 1e-4
LOOSE = 5e-2
ROWS = [
    Hyperparams("sgd", 0.1, "onecycle", {"pct_start": 0.3}),
    Hyperparams("momentum", 0.05, "cosine", {"momentum": 0.9}),
    Hyperparams("nesterov", 0.03, "step", {"momentum": 0.8, "step_size": 2, "step_gamma": 0.5}),
    Hyperparams("adam", 0.003),
    Hyperparams("adamw", 0.01, "cosine", {"weight_decay": 1e-2}),
    Hyperparams("rmsprop", 0.001, "none", {"momentum": 0.5}),
    Hyperparams("adagrad", 0.03, "exponential", {"exp_gamma": 0.8}),
]


def as_float32(pair: tuple[torch.Tensor, torch.Tensor], shape: tuple[int, ...]
               ) -> tuple[torch.Tensor, torch.Tensor]:
    return pair[0].float().view(-1, *shape), pair[1]


def objective(net: nn.Module, shape: tuple[int, ...]) -> DatasetObjective:
    """``tiny``'s task in float32 (its inputs of ``shape``) on ``net``, at bf16."""
    return DatasetObjective(net, as_float32(data(0), shape), batch_size=8,
                            loss_fn=nn.functional.cross_entropy,
                            validation=as_float32(data(1, HELD_OUT), shape),
                            metrics={"accuracy": accuracy}).with_autocast(torch.bfloat16)


def bias_free() -> DatasetObjective:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 16, bias=False), nn.ReLU(), nn.Dropout(0.25),
                            nn.Linear(16, 3, bias=False))
    return objective(net, (4,))


def biased_with_batchnorm() -> DatasetObjective:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                            nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(),
                            nn.Dropout(0.25), nn.Linear(8, 3))
    return objective(net, (1, 2, 2))


def stacked_and_alone(made: DatasetObjective) -> list[tuple[TrainResult, TrainResult]]:
    """Every row trained in one stack (checked to be one), and each on its own."""
    groups: list[list[int]] = []
    batched = train_batch(made, ROWS, EPOCHS, on_stacks=groups.extend)
    assert groups == [list(range(len(ROWS)))]  # the rows ran stacked: vmap took them
    return [(result, train(made, hp, EPOCHS)) for hp, result in zip(ROWS, batched, strict=True)]


def test_rows_of_layers_without_a_bias_follow_their_sequential_runs_at_bf16() -> None:
    for batched, alone in stacked_and_alone(bias_free()):
        assert batched.status == alone.status == "complete"
        assert batched.history.names == alone.history.names
        for name in alone.history.names:
            np.testing.assert_allclose(batched.history.metric(name),
                                       alone.history.metric(name), rtol=EXACT, atol=0,
                                       err_msg=name)
        assert batched.final_loss == pytest.approx(alone.final_loss, rel=EXACT, abs=0)
        assert batched.params is not None and alone.params is not None
        for key, want in alone.params.items():
            scale = float(want.abs().max())
            torch.testing.assert_close(batched.params[key], want, rtol=EXACT,
                                       atol=EXACT * scale, msg=key)


def test_rows_of_biased_layers_stay_within_bf16_rounding_of_their_sequential_runs() -> None:
    for batched, alone in stacked_and_alone(biased_with_batchnorm()):
        assert batched.status == alone.status == "complete"
        for name in ("loss", "val_loss"):
            np.testing.assert_allclose(batched.history.metric(name),
                                       alone.history.metric(name), rtol=LOOSE, atol=0,
                                       err_msg=name)


def test_fp16_trials_run_one_at_a_time_and_bf16_trials_stack() -> None:
    made = bias_free()
    assert stackable(made) is None
    reason = stackable(made.with_autocast(torch.float16))
    assert reason is not None and "fp16" in reason
