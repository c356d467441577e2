"""Per-tensor statistics of batched trials: each trial's rows equal its sequential run's, and
turning them off removes them from the batch as from the sequential loop."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sweeps.batched import batchable, train_batch
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from tests.sweeps.training.tensor_objectives import TENSORS, full_batch

EPOCHS = 6
HPS = [Hyperparams("sgd", 0.3), Hyperparams("adam", 0.05, "cosine"),
       Hyperparams("momentum", 0.1, "step", {"momentum": 0.9, "step_size": 2,
                                               "step_gamma": 0.5})]


def test_batched_per_tensor_rows_equal_the_sequential_ones(
        caplog: pytest.LogCaptureFixture) -> None:
    objective = full_batch()
    assert all(batchable(hp) for hp in HPS)
    with caplog.at_level(logging.WARNING, logger="sweeps.batched.trials"):
        batched = train_batch(objective, HPS, EPOCHS, chunk=4)
    assert not caplog.records, "the trials must run as one batch"
    for hp, result in zip(HPS, batched):
        sequential = train(objective, hp, EPOCHS, chunk=4)
        assert result.history.tensors == TENSORS
        assert result.history.names == sequential.history.names
        for name in sequential.history.names:
            np.testing.assert_allclose(result.history.metric(name),
                                       sequential.history.metric(name), rtol=1e-12, atol=0,
                                       err_msg=f"{hp.optimizer}: {name}")


def test_a_batch_without_per_tensor_statistics_has_none() -> None:
    objective = full_batch()
    on = train_batch(objective, HPS[:2], EPOCHS)
    off = train_batch(objective, HPS[:2], EPOCHS, per_tensor=False)
    for with_them, without in zip(on, off):
        assert without.history.tensors == ()
        assert without.history.names == tuple(n for n in with_them.history.names
                                              if "/" not in n)
        for name in without.history.names:
            np.testing.assert_array_equal(without.history.metric(name),
                                          with_them.history.metric(name), err_msg=name)
