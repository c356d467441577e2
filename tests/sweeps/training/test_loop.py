"""The training loop: its per-epoch statistics (SPEC section 5) against a naive loop, chunking,
failures, pruning and what observers receive."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from objectives import Objective
from objectives.rebalance import Rebalance
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import ObjectiveStartError, Observer, TrainResult, train
from sweeps.training.stats import EPOCH_METRICS, EpochStats

CPU = torch.device("cpu")
EPOCHS = 30

# Naive references, built from torch directly rather than from sweeps' registries.
RefOptimizer = Callable[[list[torch.Tensor], float], torch.optim.Optimizer]
REF_OPTIMIZERS: dict[str, RefOptimizer] = {
    "sgd": lambda ps, lr: torch.optim.SGD(ps, lr=lr),
    "momentum": lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9),
    "adam": lambda ps, lr: torch.optim.Adam(ps, lr=lr),
}
REF_SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer, int], Any]] = {
    "none": lambda opt, epochs: None,
    "cosine": lambda opt, epochs: torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs),
}
LR = {("rebalance", "adam"): 0.1, ("rebalance", "sgd"): 1e3, ("rebalance", "momentum"): 1e3,
      ("digits_mlp", "adam"): 0.01, ("digits_mlp", "sgd"): 0.3,
      ("digits_mlp", "momentum"): 0.3}


def reference_loop(objective: Objective, optimizer: str, scheduler: str, lr: float,
                   epochs: int) -> tuple[dict[str, list[float]], float]:
    """SPEC 5 computed one epoch at a time with ``.item()``; and the final loss."""
    params = {k: v.detach().clone().requires_grad_(True)
              for k, v in objective.init_params(CPU).items()}
    leaves = list(params.values())
    numel = sum(p.numel() for p in leaves)
    opt = REF_OPTIMIZERS[optimizer](leaves, lr)
    sched = REF_SCHEDULERS[scheduler](opt, epochs)
    out: dict[str, list[float]] = {m: [] for m in EPOCH_METRICS}
    for _ in range(epochs):
        opt.zero_grad()
        loss = objective.loss(params)
        loss.backward()
        before = [p.detach().clone() for p in leaves]
        out["loss"].append(loss.item())
        out["grad_abs_mean"].append(sum(p.grad.abs().sum().item() for p in leaves) / numel)
        out["lr"].append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
        update = sum((p.detach() - b).abs().sum().item() for p, b in zip(leaves, before))
        size = sum(b.abs().sum().item() for b in before)
        out["update_abs_mean"].append(update / numel)
        out["update_ratio"].append((update / numel) / (size / numel))
    with torch.no_grad():
        final = objective.loss(params).item()
    return out, final


@pytest.mark.parametrize("scheduler", list(REF_SCHEDULERS))
@pytest.mark.parametrize("optimizer", list(REF_OPTIMIZERS))
@pytest.mark.parametrize("objective_name", ["rebalance", "digits_mlp"])
def test_statistics_match_a_naive_loop_for_every_chunk_size(
    objective_name: str, optimizer: str, scheduler: str, request: pytest.FixtureRequest
) -> None:
    objective: Objective = request.getfixturevalue(objective_name)
    lr = LR[(objective_name, optimizer)]
    expected, final = reference_loop(objective, optimizer, scheduler, lr, EPOCHS)
    results = [train(objective, Hyperparams(optimizer, lr, scheduler), EPOCHS, chunk=chunk)
               for chunk in (1, 7, EPOCHS)]
    for result in results:
        assert result.status == "complete"
        for metric in EPOCH_METRICS:
            np.testing.assert_allclose(getattr(result.history, metric), expected[metric],
                                       rtol=1e-12, atol=0, err_msg=metric)
        assert result.final_loss == pytest.approx(final, rel=1e-12, abs=0)
    first = results[0]
    for other in results[1:]:  # chunking changes no number at all
        for metric in EPOCH_METRICS:
            np.testing.assert_array_equal(getattr(other.history, metric),
                                          getattr(first.history, metric), err_msg=metric)
        assert other.final_loss == first.final_loss
        assert other.params is not None and first.params is not None
        for key in first.params:
            assert torch.equal(other.params[key], first.params[key]), key


@dataclass
class Faulty:
    """The rebalance loss, going wrong from its ``at``-th evaluation (epoch ``at``) on.

    ``fault``: ``nan-loss`` (a NaN loss, finite gradients), ``nan-grad`` (a finite loss, NaN
    gradients from sqrt at 0), ``raise`` (an exception), or ``nan-grad-then-check`` (NaN
    gradients, and from the next epoch on an objective that refuses non-finite parameters).
    """

    fault: str
    at: int
    name: str = "faulty"
    default_epochs: int = 30
    calls: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._base = Rebalance()

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        return self._base.init_params(device)

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        epoch, self.calls = self.calls, self.calls + 1
        if self.fault == "nan-grad-then-check" and not torch.isfinite(params["shares"]).all():
            raise ValueError("shares must be finite")
        loss = self._base.loss(params)
        if epoch < self.at:
            return loss
        if self.fault == "nan-loss":
            return loss + math.nan
        if self.fault in ("nan-grad", "nan-grad-then-check"):
            return loss + torch.sqrt(params["shares"][0] * 0.0)  # d sqrt(0) = inf, inf * 0
        raise RuntimeError(f"objective broke at epoch {epoch}")

    def arguments(self) -> dict[str, Any]:
        return {"fault": self.fault, "at": self.at}


class Recording(Observer):
    """Keeps every chunk and the result; asks to stop after ``stop_after`` chunks."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.chunks: list[EpochStats] = []
        self.results: list[TrainResult] = []
        self.stop_after = stop_after

    def on_chunk(self, stats: EpochStats) -> bool:
        self.chunks.append(stats)
        return self.stop_after is not None and len(self.chunks) >= self.stop_after

    def on_end(self, result: TrainResult) -> None:
        self.results.append(result)

    def assert_saw(self, result: TrainResult) -> None:
        """Consecutive chunks covering exactly the epochs run, then the result once."""
        assert self.results == [result]
        assert [c.start for c in self.chunks] == list(
            np.cumsum([0] + [len(c) for c in self.chunks[:-1]]))
        assert sum(len(c) for c in self.chunks) == result.epochs_run
        joined = EpochStats.concat(self.chunks)
        for metric in EPOCH_METRICS:
            np.testing.assert_array_equal(getattr(joined, metric),
                                          getattr(result.history, metric))


SGD = Hyperparams("sgd", 1e3)


@pytest.fixture(scope="module")
def clean(rebalance: Rebalance) -> TrainResult:
    return train(rebalance, SGD, EPOCHS, chunk=7)


def test_faulty_objective_follows_the_protocol() -> None:
    assert isinstance(Faulty("raise", 3), Objective)


def assert_failed_at(result: TrainResult, epoch: int, clean: TrainResult) -> None:
    assert result.status == "failed"
    assert result.failure_epoch == epoch
    assert result.epochs_run == epoch
    assert math.isnan(result.final_loss)
    assert result.params is None
    np.testing.assert_array_equal(result.history.epochs, np.arange(epoch))
    for metric in EPOCH_METRICS:  # the epochs before the fault are kept as they were
        np.testing.assert_array_equal(getattr(result.history, metric),
                                      getattr(clean.history, metric)[:epoch], err_msg=metric)


@pytest.mark.parametrize("at", [0, 1, 6, 7, 12, EPOCHS - 1])
def test_nan_loss_fails_at_its_epoch(at: int, clean: TrainResult) -> None:
    observer = Recording()
    result = train(Faulty("nan-loss", at), SGD, EPOCHS, chunk=7, observers=(observer,))
    assert_failed_at(result, at, clean)
    assert result.failure is not None and "loss" in result.failure
    assert "gradient" not in result.failure
    observer.assert_saw(result)


@pytest.mark.parametrize("at", [0, 5, 7])
def test_nan_gradient_fails_naming_the_gradient(at: int, clean: TrainResult) -> None:
    result = train(Faulty("nan-grad", at), SGD, EPOCHS, chunk=7)
    assert_failed_at(result, at, clean)
    assert result.failure is not None and "gradient" in result.failure
    assert "loss" not in result.failure


@pytest.mark.parametrize("at", [1, 6, 7, 12])
def test_exception_in_loss_fails_with_its_text(at: int, clean: TrainResult) -> None:
    observer = Recording()
    result = train(Faulty("raise", at), SGD, EPOCHS, chunk=7, observers=(observer,))
    assert_failed_at(result, at, clean)
    assert result.failure is not None
    assert f"RuntimeError: objective broke at epoch {at}" in result.failure
    observer.assert_saw(result)


def test_exception_at_the_first_epoch_is_an_objective_start_error() -> None:
    observer = Recording()
    with pytest.raises(ObjectiveStartError, match="objective broke at epoch 0"):
        train(Faulty("raise", 0), SGD, EPOCHS, chunk=7, observers=(observer,))
    assert observer.chunks == [] and observer.results == []


def test_nan_before_an_exception_in_the_same_chunk_is_the_failure(clean: TrainResult) -> None:
    result = train(Faulty("nan-grad-then-check", 3), SGD, EPOCHS, chunk=7)
    assert_failed_at(result, 3, clean)
    assert result.failure is not None and "gradient" in result.failure


def test_observer_returning_true_prunes_the_run(rebalance: Rebalance) -> None:
    stopper, watcher = Recording(stop_after=2), Recording()
    result = train(rebalance, SGD, EPOCHS, chunk=5, observers=(stopper, watcher))
    assert result.status == "pruned"
    assert result.failure is None and result.failure_epoch is None
    assert result.epochs_run == 10
    assert len(watcher.chunks) == 2  # every observer sees the chunk that stopped the run
    stopper.assert_saw(result)
    watcher.assert_saw(result)
    assert result.params is not None
    with torch.no_grad():
        assert result.final_loss == float(rebalance.loss(result.params))


def test_observers_receive_consecutive_chunks_covering_the_run(rebalance: Rebalance) -> None:
    first, second = Recording(), Recording()
    result = train(rebalance, SGD, EPOCHS, chunk=7, observers=(first, second))
    assert result.status == "complete"
    assert [len(c) for c in first.chunks] == [7, 7, 7, 7, 2]
    first.assert_saw(result)
    second.assert_saw(result)


@pytest.mark.parametrize("objective_name", ["rebalance", "digits_mlp"])
def test_final_loss_is_the_loss_of_the_returned_params(objective_name: str,
                                                       request: pytest.FixtureRequest) -> None:
    objective: Objective = request.getfixturevalue(objective_name)
    result = train(objective, Hyperparams("adam", 0.01), EPOCHS, chunk=7)
    assert result.params is not None
    with torch.no_grad():
        assert result.final_loss == float(objective.loss(result.params))
    assert result.final_loss != result.history.loss[-1]  # after the last step, not before
    assert result.best_loss == min(result.history.loss.min(), result.final_loss)


def test_seed_case(rebalance: Rebalance) -> None:
    """SPEC 5: SGD at lr 0.01 on the rebalance loss barely moves in 10,000 epochs."""
    result = train(rebalance, Hyperparams("sgd", 0.01), 10_000)
    assert result.status == "complete"
    assert result.epochs_run == 10_000
    history = result.history
    assert f"{history.grad_abs_mean[0]:.4e}" == "1.1838e-05"
    assert f"{history.update_abs_mean[0]:.4e}" == "1.1838e-07"
    assert f"{history.loss[0]:.4e}" == "2.3874e-03"
    assert f"{result.final_loss:.4e}" == "2.3871e-03"
    assert history.update_abs_mean[0] == pytest.approx(0.01 * history.grad_abs_mean[0],
                                                       rel=1e-9)
