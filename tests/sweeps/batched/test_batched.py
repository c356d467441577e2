"""Batched trials follow their sequential trajectories exactly, for every optimizer and
scheduler; pruning, failures and fallbacks stay per trial."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

import objectives
from sweeps.batched.trials import batchable, train_batch
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import Observer, TrainResult, train
from sweeps.batched.lr_tables import TABULATED, lr_table
from sweeps.optim.optimizers import OPTIMIZERS, build_optimizer
from sweeps.optim.schedulers import SCHEDULERS, build_scheduler
from sweeps.training.stats import EPOCH_METRICS, EpochStats

EPOCHS = 120
SGD_LIKE = ("sgd", "momentum", "nesterov")


def configs(optimizer: str, scheduler: str) -> list[Hyperparams]:
    """Three configurations of one optimizer and scheduler, with different sub-parameters."""
    base = (3e3, 2e4, 1e5) if optimizer in SGD_LIKE else (0.01, 0.3, 3.0)
    out = []
    for i, lr in enumerate(base):
        options: dict[str, float] = {}
        if optimizer in ("momentum", "nesterov", "rmsprop"):
            options["momentum"] = (0.5, 0.8, 0.95)[i]
        if optimizer == "adamw":
            options["weight_decay"] = (1e-4, 1e-3, 1e-2)[i]
        options.update({
            "step": {"step_size": 10 + 7 * i, "step_gamma": 0.3 + 0.2 * i},
            "exponential": {"exp_gamma": 0.99 - 0.01 * i},
            "onecycle": {"pct_start": 0.1 + 0.15 * i},
            "plateau": {"plateau_factor": 0.2 + 0.3 * i, "plateau_patience": 3 + 2 * i},
        }.get(scheduler, {}))
        out.append(Hyperparams(optimizer, lr, scheduler, options))
    return out


def assert_same(batched: TrainResult, sequential: TrainResult, rel: float = 1e-12) -> None:
    assert batched.status == sequential.status
    assert batched.epochs_run == sequential.epochs_run
    for metric in EPOCH_METRICS:
        got, want = getattr(batched.history, metric), getattr(sequential.history, metric)
        np.testing.assert_allclose(got, want, rtol=rel, atol=0, err_msg=metric)
    assert batched.final_loss == pytest.approx(sequential.final_loss, rel=rel, abs=0,
                                               nan_ok=True)
    assert batched.failure_epoch == sequential.failure_epoch


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_a_batch_follows_each_sequential_trajectory(optimizer: str, scheduler: str) -> None:
    objective = objectives.build("rebalance")
    hps = configs(optimizer, scheduler)
    assert all(batchable(hp) for hp in hps)
    batched = train_batch(objective, hps, EPOCHS, chunk=25)
    for hp, result in zip(hps, batched):
        assert_same(result, train(objective, hp, EPOCHS, chunk=25))


def test_a_mixed_batch_of_several_tensors_follows_each_sequential_run() -> None:
    objective = objectives.build("digits", {"hidden": "8"})
    hps = [configs(o, s)[i % 3] for i, (o, s) in enumerate(
        zip(OPTIMIZERS, ["none", "cosine", "step", "onecycle", "plateau", "exponential",
                         "cosine"]))]
    hps = [Hyperparams(hp.optimizer, 0.5 if hp.optimizer in SGD_LIKE else 0.01, hp.scheduler,
                       hp.options) for hp in hps]
    batched = train_batch(objective, hps, 40)
    for hp, result in zip(hps, batched):
        assert_same(result, train(objective, hp, 40))


@pytest.mark.parametrize("scheduler", list(TABULATED))
def test_lr_tables_equal_torch_schedulers_bit_for_bit(scheduler: str) -> None:
    for hp in configs("adam", scheduler) + configs("sgd", scheduler):
        for epochs in (1, 2, 37, 300):
            param = torch.zeros(1, requires_grad=True)
            optimizer = build_optimizer(hp.optimizer, [param], hp.lr, hp.options)
            torch_scheduler = build_scheduler(scheduler, optimizer, epochs, hp.options)
            seen = []
            for _ in range(epochs):
                seen.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                if torch_scheduler is not None:
                    torch_scheduler.step()
            assert lr_table(scheduler, hp.lr, epochs, hp.options) == seen


@dataclass
class PruneAt(Observer):
    epoch: int
    seen: list[EpochStats] = field(default_factory=list)

    def on_chunk(self, stats: EpochStats) -> bool:
        self.seen.append(stats)
        return stats.start + len(stats) >= self.epoch


def test_pruning_and_divergence_end_single_trials_of_a_batch() -> None:
    objective = objectives.build("tests.toy_objectives:Quadratic")
    hps = [Hyperparams("sgd", 0.1), Hyperparams("sgd", 50.0), Hyperparams("sgd", 0.2),
           Hyperparams("adam", 0.1)]
    pruner = PruneAt(40)
    batched = train_batch(objective, hps, 100, chunk=20,
                          observers=[(), (), (pruner,), ()])
    sequential = [train(objective, hp, 100, chunk=20) for hp in hps]
    assert [r.status for r in batched] == ["complete", "failed", "pruned", "complete"]
    assert batched[1].failure == sequential[1].failure
    assert batched[1].failure_epoch == sequential[1].failure_epoch
    assert batched[2].epochs_run == 40 and sum(len(s) for s in pruner.seen) == 40
    for i in (0, 1, 3):
        assert_same(batched[i], sequential[i])
    assert batched[2].final_loss == pytest.approx(
        float(objective.loss(batched[2].params or {})), rel=1e-15)


class NotTraceable:
    """An objective vmap cannot batch (a data-dependent Python branch)."""

    name = "not-traceable"
    default_epochs = 30

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        return {"x": torch.tensor([3.0, -1.0], dtype=torch.float64, device=device)}

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        x = params["x"]
        return (x**2).sum() if float(x.sum()) > -100 else x.sum()

    def arguments(self) -> dict[str, Any]:
        return {}


def test_objectives_vmap_cannot_trace_fall_back_to_sequential_runs() -> None:
    objective = NotTraceable()
    hps = [Hyperparams("sgd", 0.1), Hyperparams("adam", 0.05)]
    for batched, hp in zip(train_batch(objective, hps, 30), hps):
        assert_same(batched, train(objective, hp, 30))


def test_a_native_batched_loss_equals_the_loss_row_by_row() -> None:
    objective = objectives.build("rebalance")
    rows = torch.rand(64, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    stacked = (rows * 60 - 5).requires_grad_(True)
    objective.batched_loss({"shares": stacked}).sum().backward()
    for row, grad in zip(stacked.detach(), stacked.grad):
        single = row.clone().requires_grad_(True)
        loss = objective.loss({"shares": single})
        loss.backward()
        assert torch.equal(single.grad, grad)
    values = objective.batched_loss({"shares": stacked.detach()})
    assert torch.equal(values, torch.stack([objective.loss({"shares": r})
                                            for r in stacked.detach()]))
