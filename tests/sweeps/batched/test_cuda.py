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
