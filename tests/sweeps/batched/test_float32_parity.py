"""Batched trials in float32 on a net with a bias before each BatchNorm (a conv and a linear
layer, as the shipped digits CNN has): each row follows its sequential run to float32 rounding.

Tolerance: ``RTOL = 2e-5`` (about 170 float32 ulps) on every compared per-epoch metric, the
first and final losses, and each parameter and buffer (a tensor's elements: of its largest).
Measured here, on one CPU thread or two: metrics at most 1.7e-6 (``update_ratio`` of a
BatchNorm weight: an update taken as the difference of two float32 values near 1, which
magnifies one ulp), tensors at most 1.6e-6; over initialisation seeds 0 to 5 at most 3.1e-6 and
2.0e-6, and at most 1.0e-5 with the rows split into other batches and other batch orders.
float32's rounding, carried through four epochs, sets the bound (the float64 tests,
``test_batched_minibatch``, hold rows to 1e-12); the learning rates are moderate, so that it
grows slowly over the steps instead of chaotically. A row's lr off by one part in 10^4 moves
its parameters by about 1e-4 and fails.

A bias before BatchNorm has a gradient of zero up to rounding (the normalisation subtracts it
again): its gradient statistics are rounding noise in both runs, checked to be that small
(``NOISE``; measured at most 1.7e-6 of its layer's weight gradient) rather than compared. SGD
moves such a bias by the lr times that noise, so its value still agrees. Adaptive optimizers
divide the noise by its own running size and move the bias by steps of the lr's order in
directions no two summation orders agree on: for them the bias, its BatchNorm's
``running_mean`` (which follows it), the validation metrics (evaluated with that
``running_mean``) and the overall update statistics (which include the bias's updates) are
not compared; the training losses, which BatchNorm makes independent of the bias, and every
other tensor are.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from objectives.dataset import DatasetObjective, accuracy
from sweeps.batched import train_batch
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import TrainResult, train

try:
    from minibatch_objectives import HELD_OUT, data
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import HELD_OUT, data

EPOCHS = 4
RTOL = 2e-5
NOISE = 2e-5  # a pre-BatchNorm bias's mean |grad|, at most, over its weight's
PRE_BN = {"0.bias": "0.weight", "4.bias": "4.weight"}  # bias before BatchNorm: its weight
RUNNING_MEANS = ("1.running_mean", "5.running_mean")  # the BatchNorms after those biases

SGD_ROWS = [
    Hyperparams("sgd", 0.1, "onecycle", {"pct_start": 0.3}),
    Hyperparams("momentum", 0.05, "cosine", {"momentum": 0.9}),
    Hyperparams("nesterov", 0.03, "step", {"momentum": 0.8, "step_size": 2, "step_gamma": 0.5}),
]
ADAPTIVE_ROWS = [
    Hyperparams("adam", 0.003),
    Hyperparams("adamw", 0.01, "cosine", {"weight_decay": 1e-2}),
    Hyperparams("rmsprop", 0.001, "none", {"momentum": 0.5}),
    Hyperparams("adagrad", 0.03, "exponential", {"exp_gamma": 0.8}),
]


def images(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``data``'s four features as float32 1x2x2 images."""
    inputs, targets = pair
    return inputs.float().view(-1, 1, 2, 2), targets


def conv_net() -> DatasetObjective:
    """``tiny``'s task in float32 on conv (bias), BatchNorm2d, ReLU, linear (bias),
    BatchNorm1d, ReLU, dropout, linear; batches of 8 of 37 rows."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                            nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(),
                            nn.Dropout(0.25), nn.Linear(8, 3))
    return DatasetObjective(net, images(data(0)), batch_size=8,
                            loss_fn=nn.functional.cross_entropy,
                            validation=images(data(1, HELD_OUT)),
                            metrics={"accuracy": accuracy})


Runs = list[tuple[Hyperparams, TrainResult, TrainResult]]  # (row, batched, sequential)


@pytest.fixture(scope="module")
def runs() -> Runs:
    """Every row trained in one batch, and each on its own."""
    objective = conv_net()
    hps = SGD_ROWS + ADAPTIVE_ROWS
    batched = train_batch(objective, hps, EPOCHS)
    return [(hp, result, train(objective, hp, EPOCHS))
            for hp, result in zip(hps, batched, strict=True)]


def assert_close(batched: TrainResult, sequential: TrainResult, skip: set[str]) -> None:
    """The two runs agree to ``RTOL`` in every metric and tensor but those in ``skip``."""
    assert batched.status == sequential.status == "complete"
    assert batched.epochs_run == sequential.epochs_run == EPOCHS
    assert batched.history.names == sequential.history.names
    for name in sequential.history.names:
        if name not in skip:
            np.testing.assert_allclose(batched.history.metric(name),
                                       sequential.history.metric(name), rtol=RTOL, atol=0,
                                       err_msg=name)
    assert batched.history.initial_loss == pytest.approx(sequential.history.initial_loss,
                                                         rel=RTOL, abs=0)
    assert batched.final_loss == pytest.approx(sequential.final_loss, rel=RTOL, abs=0)
    assert batched.params is not None and batched.buffers is not None
    assert sequential.params is not None and sequential.buffers is not None
    tensors = {**batched.params, **batched.buffers}
    for key, want in {**sequential.params, **sequential.buffers}.items():
        if key in skip:
            continue
        got = tensors[key]
        assert got.dtype == want.dtype, key
        scale = float(want.abs().max()) if want.is_floating_point() else 0.0
        torch.testing.assert_close(got, want, rtol=RTOL, atol=RTOL * scale, msg=key)


def assert_rounding_noise(result: TrainResult) -> None:
    """Each pre-BatchNorm bias's mean |grad| is rounding noise: at most ``NOISE`` times the
    smallest of its weight's (a bias sharing BatchNorm statistics across trials would not
    cancel)."""
    for bias, weight in PRE_BN.items():
        noise = result.history.metric(f"grad_abs_mean/{bias}").max()
        assert noise <= NOISE * result.history.metric(f"grad_abs_mean/{weight}").min(), bias


def _noise_metrics() -> set[str]:
    return {f"{metric}/{bias}" for metric in ("grad_abs_mean", "update_ratio")
            for bias in PRE_BN}


def test_sgd_rows_follow_their_sequential_runs_in_float32(runs: Runs) -> None:
    rows = [(hp, b, s) for hp, b, s in runs if hp in SGD_ROWS]
    assert len(rows) == len(SGD_ROWS)
    for hp, batched, sequential in rows:
        assert_close(batched, sequential, skip=_noise_metrics())
        assert_rounding_noise(batched)
        assert_rounding_noise(sequential)


def test_adaptive_rows_follow_their_sequential_runs_except_where_the_bias_goes(
        runs: Runs) -> None:
    rows = [(hp, b, s) for hp, b, s in runs if hp in ADAPTIVE_ROWS]
    assert len(rows) == len(ADAPTIVE_ROWS)
    bias_driven = {*PRE_BN, *RUNNING_MEANS, "update_abs_mean", "update_ratio", "val_loss",
                   "val_accuracy"}
    for hp, batched, sequential in rows:
        assert_close(batched, sequential, skip=_noise_metrics() | bias_driven)
        assert_rounding_noise(batched)
        assert_rounding_noise(sequential)
