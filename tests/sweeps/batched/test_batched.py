"""Batched trials follow their sequential trajectories, for every optimizer and scheduler;
their learning rates equal the sequential ones bit for bit; pruning, failures and fallbacks stay
per trial."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import objectives
from objectives.rebalance import Rebalance
from sweeps.batched import TABULATED, LossSchedule, batchable, lr_table, lr_tables, train_batch
from sweeps.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import ObjectiveStartError, Observer, TrainResult, train
from sweeps.training.stats import EPOCH_METRICS, EpochStats

try:
    from toy_objectives import full_batch_digits
except ImportError:  # pragma: no cover
    from tests.toy_objectives import full_batch_digits

ROOT = Path(__file__).resolve().parents[3]

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
    objective = full_batch_digits(hidden=8)
    hps = [configs(o, s)[i % 3] for i, (o, s) in enumerate(
        zip(OPTIMIZERS, ["none", "cosine", "step", "onecycle", "plateau", "exponential",
                         "cosine"]))]
    hps = [Hyperparams(hp.optimizer, 0.5 if hp.optimizer in SGD_LIKE else 0.01, hp.scheduler,
                       hp.options) for hp in hps]
    batched = train_batch(objective, hps, 40)
    for hp, result in zip(hps, batched):
        assert_same(result, train(objective, hp, 40))


def sequential_lrs(hp: Hyperparams, epochs: int) -> list[float]:
    """The lr of each epoch as the sequential loop's optimizer and scheduler set it."""
    param = torch.zeros(1, requires_grad=True)
    optimizer = build_optimizer(hp.optimizer, [param], hp.lr, hp.options)
    scheduler = build_scheduler(hp.scheduler, optimizer, epochs, hp.options)
    seen = []
    for _ in range(epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return seen


@pytest.mark.parametrize("scheduler", list(TABULATED))
def test_lr_tables_equal_the_sequential_lrs_bit_for_bit(scheduler: str) -> None:
    # adam's and sgd's configurations pair up on the same settings with different lrs: each
    # pair shares one scheduler object in lr_tables, a parameter group each
    hps = configs("adam", scheduler) + configs("sgd", scheduler) + [
        Hyperparams("adagrad", 0.5, scheduler)]
    for epochs in (1, 2, 37, 300):
        tables = lr_tables(hps, epochs)
        for hp, table in zip(hps, tables):
            assert table == sequential_lrs(hp, epochs)
            assert lr_table(scheduler, hp.lr, epochs, hp.options) == table


def test_schedules_that_step_on_the_loss_have_no_table() -> None:
    assert "plateau" not in TABULATED
    with pytest.raises(ValueError, match="plateau"):
        lr_table("plateau", 0.1, 10, {})


def test_a_loss_schedule_lowers_the_lr_as_the_loss_stalls() -> None:
    schedule = LossSchedule("plateau", 1.0, 10, {"plateau_patience": 2, "plateau_factor": 0.5})
    lrs, changes = [schedule.lr], []
    for _ in range(9):
        changes.append(schedule.step(1.0))
        lrs.append(schedule.lr)
    assert lrs == [1.0] * 4 + [0.5] * 3 + [0.25] * 3
    assert changes == [None] * 3 + [0.5] + [None] * 2 + [0.25] + [None] * 2


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


class Bowl:
    """x . x from (3, -1)."""

    name = "bowl"
    default_epochs = 20

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        return {"x": torch.tensor([3.0, -1.0], dtype=torch.float64, device=device)}

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return (params["x"] ** 2).sum()

    def arguments(self) -> dict[str, Any]:
        return {}


class NotTraceable(Bowl):
    """An objective vmap cannot batch (a data-dependent Python branch)."""

    name = "not-traceable"

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        x = params["x"]
        return (x**2).sum() if float(x.sum()) > -100 else x.sum()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_objectives_vmap_cannot_trace_fall_back_to_sequential_runs_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    objective = NotTraceable()
    hps = [Hyperparams("sgd", 0.1), Hyperparams("adam", 0.05), Hyperparams("sgd", 0.2)]
    with caplog.at_level(logging.WARNING, logger="sweeps.batched"):
        results = train_batch(objective, hps, 30)
        again = train_batch(objective, hps[:2], 30)  # a second batch: said once already
    for batched, hp in zip(results + again, hps + hps[:2]):
        assert_same(batched, train(objective, hp, 30))
    [warning] = warnings_of(caplog)
    assert "trials of not-traceable run one at a time" in warning and "vmap" in warning


def test_an_objective_whose_loss_fails_is_not_called_unbatchable(
        caplog: pytest.LogCaptureFixture) -> None:
    """A loss that fails without vmap too is the objective's failure, said once, by the
    caller (no warning about batching before it)."""

    class Broken(Bowl):
        name = "broken-bowl"

        def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
            raise RuntimeError("loss is not implemented")

    hps = [Hyperparams("sgd", 0.1), Hyperparams("adam", 0.05)]
    with caplog.at_level(logging.WARNING, logger="sweeps.batched"), \
            pytest.raises(ObjectiveStartError, match="loss is not implemented"):
        train_batch(Broken(), hps, 30)
    assert warnings_of(caplog) == []


class BowlWithAColumnOfLosses(Bowl):
    def batched_loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return (params["x"] ** 2).sum(dim=1, keepdim=True)  # (rows, 1), not (rows,)


class BowlWithABrokenBatchedLoss(Bowl):
    def batched_loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        raise TypeError("rows of what?")


def test_a_batched_loss_of_the_wrong_shape_falls_back_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    objective = BowlWithAColumnOfLosses()
    hps = [Hyperparams("sgd", 0.1), Hyperparams("sgd", 0.3)]
    with caplog.at_level(logging.WARNING, logger="sweeps.batched"):
        results = train_batch(objective, hps, 20)
    for batched, hp in zip(results, hps):
        assert_same(batched, train(objective, hp, 20))
    [warning] = warnings_of(caplog)
    assert "shape (2, 1)" in warning


def test_a_failing_batched_loss_is_the_objectives_failure_not_a_fallback() -> None:
    hps = [Hyperparams("sgd", 0.1), Hyperparams("sgd", 0.3)]
    with pytest.raises(ObjectiveStartError, match="TypeError: rows of what"):
        train_batch(BowlWithABrokenBatchedLoss(), hps, 20)


def test_configurations_no_rule_repeats_run_sequentially_beside_the_batch() -> None:
    objective = objectives.build("rebalance")
    first, *rest = configs("rmsprop", "cosine")
    hps = [first, Hyperparams("rmsprop", 0.1, "cosine", {"momentum": 0.0}), *rest]
    assert [batchable(hp) for hp in hps] == [True, False, True, True]
    for batched, hp in zip(train_batch(objective, hps, 40), hps):
        assert_same(batched, train(objective, hp, 40))


@pytest.mark.parametrize("width", [None, 1])
def test_a_batch_with_nothing_to_stack_runs_each_configuration_alone(width: int | None) -> None:
    objective = objectives.build("rebalance")
    hps = [Hyperparams("rmsprop", 0.1, "cosine", {"momentum": 0.0})]
    assert not batchable(hps[0])
    groups: list[list[int]] = []
    results = train_batch(objective, hps, 40, width=width, on_stacks=groups.extend)
    assert groups == []
    assert_same(results[0], train(objective, hps[0], 40))


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, sweeps.batched; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"


def test_a_native_batched_loss_equals_the_loss_row_by_row(rebalance: Rebalance) -> None:
    objective = rebalance
    rows = torch.rand(64, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    stacked = (rows * 60 - 5).requires_grad_(True)
    objective.batched_loss({"shares": stacked}).sum().backward()
    assert stacked.grad is not None
    for row, grad in zip(stacked.detach(), stacked.grad):
        single = row.clone().requires_grad_(True)
        loss = objective.loss({"shares": single})
        loss.backward()
        assert torch.equal(single.grad, grad)
    values = objective.batched_loss({"shares": stacked.detach()})
    assert torch.equal(values, torch.stack([objective.loss({"shares": r})
                                            for r in stacked.detach()]))
