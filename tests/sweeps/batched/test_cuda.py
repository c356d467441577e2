"""The CUDA path: the same trial on the GPU follows the CPU trajectory (skipped without one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import objectives
from sweeps.batched.trials import train_batch
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

HPS = [Hyperparams("sgd", 1e5), Hyperparams("adam", 1.0, "cosine"),
       Hyperparams("momentum", 3e4, "onecycle", {"momentum": 0.9})]


@pytest.mark.parametrize("hp", HPS, ids=lambda hp: f"{hp.optimizer}-{hp.scheduler}")
def test_a_trial_on_cuda_matches_the_cpu_trajectory(hp: Hyperparams) -> None:
    objective = objectives.build("rebalance")
    cpu = train(objective, hp, 300)
    gpu = train(objective, hp, 300, device="cuda")
    assert gpu.status == cpu.status == "complete"
    np.testing.assert_allclose(gpu.history.loss, cpu.history.loss, rtol=1e-9)
    assert gpu.params is not None and gpu.params["shares"].device.type == "cuda"


def test_a_batch_on_cuda_matches_its_sequential_cuda_runs() -> None:
    objective = objectives.build("rebalance")
    batched = train_batch(objective, HPS, 300, device="cuda")
    for hp, result in zip(HPS, batched):
        single = train(objective, hp, 300, device="cuda")
        np.testing.assert_allclose(result.history.loss, single.history.loss, rtol=1e-9)


def test_a_minibatch_batch_on_cuda_matches_its_sequential_cuda_runs() -> None:
    """Dropout included: on the GPU too the rows share one dropout stream, the trials' own."""
    objective = objectives.build("digits", {"dtype": "float64", "batch_size": "128"})
    hps = [Hyperparams("adam", 0.01, "onecycle"), Hyperparams("sgd", 0.1, "cosine")]
    batched = train_batch(objective, hps, 3, device="cuda")
    for hp, result in zip(hps, batched, strict=True):
        single = train(objective, hp, 3, device="cuda")
        assert result.status == single.status == "complete"
        for name in ("loss", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(result.history.metric(name),
                                       single.history.metric(name), rtol=1e-9, err_msg=name)
