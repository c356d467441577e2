"""Batched trials of mini-batch objectives: each row follows its sequential run for every
optimizer and scheduler (BatchNorm and dropout included), trials end one by one, objectives
that cannot stack their trials run them one at a time, and the sweep's batch size is measured,
logged and tagged on the parent run."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from mlflow import MlflowClient
from torch import nn

import objectives
from objectives import TrialState
from objectives.dataset import DatasetObjective, MetricFn, accuracy
from sweeps.batched import batchable, train_batch
from sweeps.batched.sizing import choose_batch
from sweeps.cli import run
from sweeps.optim import OPTIMIZERS, SCHEDULERS
from sweeps.study.results import RUN_ID_ATTR, counted_trials
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import ObjectiveStartError, TrainResult, train
from sweeps.training.stats import EpochStats

try:
    from bad_objectives import Broken
    from minibatch_objectives import HELD_OUT, data, tiny
except ImportError:  # pragma: no cover
    from tests.bad_objectives import Broken
    from tests.minibatch_objectives import HELD_OUT, data, tiny

EPOCHS = 4
SGD_LIKE = ("sgd", "momentum", "nesterov")


def configs(optimizer: str, scheduler: str) -> list[Hyperparams]:
    """Three configurations of one optimizer and scheduler, with different sub-parameters."""
    base = (0.05, 0.1, 0.3) if optimizer in SGD_LIKE else (0.003, 0.01, 0.03)
    out = []
    for i, lr in enumerate(base):
        options: dict[str, float] = {}
        if optimizer in ("momentum", "nesterov", "rmsprop"):
            options["momentum"] = (0.5, 0.8, 0.9)[i]
        if optimizer == "adamw":
            options["weight_decay"] = (1e-4, 1e-3, 1e-2)[i]
        options.update({
            "step": {"step_size": 1 + i, "step_gamma": 0.3 + 0.2 * i},
            "exponential": {"exp_gamma": 0.9 - 0.1 * i},
            "onecycle": {"pct_start": 0.1 + 0.15 * i},
            "plateau": {"plateau_factor": 0.2 + 0.3 * i, "plateau_patience": i},
        }.get(scheduler, {}))
        out.append(Hyperparams(optimizer, lr, scheduler, options))
    return out


def assert_same(batched: TrainResult, sequential: TrainResult, rel: float = 1e-12) -> None:
    """Every per-epoch metric (validation and per-tensor ones too), the final loss, the
    parameters and the buffers agree to ``rel`` (a tensor's elements: of its largest)."""
    assert batched.status == sequential.status
    assert batched.epochs_run == sequential.epochs_run
    assert batched.history.names == sequential.history.names
    for name in sequential.history.names:
        np.testing.assert_allclose(batched.history.metric(name), sequential.history.metric(name),
                                   rtol=rel, atol=1e-15, err_msg=name)
    assert batched.history.initial_loss == pytest.approx(sequential.history.initial_loss,
                                                         rel=rel)
    assert batched.final_loss == pytest.approx(sequential.final_loss, rel=rel, nan_ok=True)
    if sequential.params is None:
        assert batched.params is None
        return
    assert batched.params is not None and batched.buffers is not None
    assert sequential.buffers is not None
    for key, value in {**sequential.params, **sequential.buffers}.items():
        got = {**batched.params, **batched.buffers}[key]
        scale = float(value.abs().max()) if value.is_floating_point() else 0.0
        torch.testing.assert_close(got, value, rtol=rel, atol=rel * scale, msg=key)


def stacked_net(dropout: float = 0.3, batch_size: int = 8, drop_last: bool = False,
                metrics: dict[str, MetricFn] | None = None) -> DatasetObjective:
    """``tiny``'s task on linear (no bias), BatchNorm, ReLU, dropout, linear; float64. (A bias
    before BatchNorm has a zero gradient up to rounding, which Adam-like optimizers scale up
    to steps of the lr's size: no two orders of summation agree on where it goes.)"""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(),
                            nn.Dropout(dropout), nn.Linear(8, 3)).double()
    return DatasetObjective(net, data(0), batch_size=batch_size, drop_last=drop_last,
                            loss_fn=nn.functional.cross_entropy, validation=data(1, HELD_OUT),
                            metrics=metrics or {"accuracy": accuracy})


@pytest.fixture(scope="module")
def with_dropout() -> DatasetObjective:
    """Batches of 8 of 37 rows, dropout 0.3."""
    return stacked_net(dropout=0.3)


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_each_row_follows_its_sequential_run(optimizer: str, scheduler: str,
                                             with_dropout: DatasetObjective) -> None:
    hps = configs(optimizer, scheduler)
    assert all(batchable(hp) for hp in hps)
    batched = train_batch(with_dropout, hps, EPOCHS, chunk=3)
    for hp, result in zip(hps, batched, strict=True):
        assert_same(result, train(with_dropout, hp, EPOCHS, chunk=3))


def test_a_mixed_batch_without_dropout_follows_each_sequential_run() -> None:
    objective = stacked_net(dropout=0.0, batch_size=5, drop_last=True)
    hps = [configs(o, s)[i % 3] for i, (o, s) in enumerate(
        zip(OPTIMIZERS, ["none", "cosine", "step", "onecycle", "plateau", "exponential",
                         "cosine"]))]
    batched = train_batch(objective, hps, 6)
    for hp, result in zip(hps, batched, strict=True):
        assert_same(result, train(objective, hp, 6))


def test_step_traces_of_a_batch_equal_the_sequential_ones(
        with_dropout: DatasetObjective) -> None:
    hps = configs("adam", "onecycle") + configs("momentum", "plateau")
    batched = train_batch(with_dropout, hps, EPOCHS, chunk=3, log_steps=True)
    steps = with_dropout.steps_per_epoch
    for hp, result in zip(hps, batched, strict=True):
        sequential = train(with_dropout, hp, EPOCHS, chunk=3, log_steps=True).history.trace
        trace = result.history.trace
        assert trace is not None and sequential is not None
        assert trace.start == 0 and trace.steps.tolist() == [steps] * EPOCHS
        np.testing.assert_allclose(trace.loss, sequential.loss, rtol=1e-12, atol=0)
        np.testing.assert_array_equal(trace.lr, sequential.lr)
    assert len(set(batched[0].history.trace.lr)) == EPOCHS * steps  # onecycle: every step


class Pruning:
    """Prunes its trial at its first chunk."""

    def on_chunk(self, stats: EpochStats) -> bool:
        return True

    def on_end(self, result: TrainResult) -> None:
        return None


class Chunks:
    """Counts the chunks of its trial."""

    def __init__(self) -> None:
        self.seen = 0

    def on_chunk(self, stats: EpochStats) -> bool:
        self.seen += 1
        return False

    def on_end(self, result: TrainResult) -> None:
        return None


def test_trials_that_end_early_are_handed_over_when_they_end(
        with_dropout: DatasetObjective) -> None:
    # BatchNorm keeps the loss finite at sgd 1e12; 1e200 overflows alone and in a stack
    hps = [Hyperparams("adam", 0.01), Hyperparams("adam", 0.02), Hyperparams("sgd", 1e200)]
    assert train(with_dropout, hps[2], 8).status == "failed"
    counter = Chunks()
    ended: list[tuple[int, str, int]] = []  # (configuration, status, chunks seen by row 0)
    results = train_batch(with_dropout, hps, 8, chunk=1,
                          observers=[(counter,), (Pruning(),), ()],
                          on_result=lambda i, r: ended.append((i, r.status, counter.seen)))
    assert [r.status for r in results] == ["complete", "pruned", "failed"]
    assert [(i, status) for i, status, _ in ended] == [(2, "failed"), (1, "pruned"),
                                                       (0, "complete")]
    assert ended[0][2] < 8 and ended[1][2] == 1  # while the first trial still trained
    assert results[2].failure is not None and results[2].failure.startswith("non-finite")


class Unstackable:
    """A mini-batch objective with no ``batch_losses``: ``tiny`` behind a plain interface."""

    def __init__(self) -> None:
        self.inner = tiny()
        self.name = "tests.test_batched_minibatch:unstackable"  # logged by this test only
        self.default_epochs = 3

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        return self.inner.init_params(device)

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.inner.loss(params)

    def arguments(self) -> dict[str, Any]:
        return {}

    def start_trial(self, device: torch.device) -> TrialState:
        return self.inner.start_trial(device)

    def batches(self, epoch: int, device: torch.device) -> list[torch.Tensor]:
        return self.inner.batches(epoch, device)

    def batch_loss(self, params: dict[str, torch.Tensor], state: TrialState,
                   batch: torch.Tensor) -> torch.Tensor:
        return self.inner.batch_loss(params, state, batch)

    def validate(self, params: dict[str, torch.Tensor],
                 state: TrialState) -> dict[str, torch.Tensor]:
        return self.inner.validate(params, state)


def test_an_objective_that_cannot_stack_trials_runs_them_one_at_a_time_saying_why_once(
        caplog: pytest.LogCaptureFixture) -> None:
    objective = Unstackable()
    assert objectives.is_minibatch(objective)
    hps = [Hyperparams("sgd", 0.1), Hyperparams("adam", 0.01), Hyperparams("sgd", 0.3)]
    with caplog.at_level(logging.WARNING, logger="sweeps.batched"):
        results = train_batch(objective, hps, 3)
        train_batch(objective, hps[:2], 3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"trials of {objective.name} run one at a time: it has no "
                        "batch_losses (objectives.DatasetObjective has one)"]
    for result, hp in zip(results, hps, strict=True):
        assert_same(result, train(objective.inner, hp, 3), rel=0)


class Failing(nn.Module):
    """A module whose forward fails, batched or not."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4, dtype=torch.float64))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("forward is broken")


def test_a_loss_that_fails_unbatched_too_is_the_objectives_failure_not_a_fallback(
        caplog: pytest.LogCaptureFixture) -> None:
    objective = DatasetObjective(Failing(), data(0), batch_size=8,
                                 loss_fn=nn.functional.cross_entropy, name="failing")
    hps = [Hyperparams("adam", 0.01), Hyperparams("adam", 0.02)]
    with caplog.at_level(logging.WARNING, logger="sweeps.batched"):
        with pytest.raises(ObjectiveStartError, match="RuntimeError: forward is broken"):
            train_batch(objective, hps, 2)
    assert not caplog.records  # no "run one at a time" on the way


def test_validation_falls_back_to_one_row_at_a_time_for_metrics_vmap_cannot_trace() -> None:
    def share_right(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return (outputs.argmax(dim=1) == targets).sum().item() / len(targets)  # .item()

    objective = stacked_net(metrics={"right": share_right})
    hps = [Hyperparams("adam", 0.01), Hyperparams("adam", 0.05)]
    batched = train_batch(objective, hps, 3)
    for hp, result in zip(hps, batched, strict=True):
        assert_same(result, train(objective, hp, 3))
    assert len(set(batched[0].history.metric("val_right"))) > 1  # scored after each epoch


class SlowWhenWide(DatasetObjective):
    """``tiny``'s objective whose stacked step costs 5 ms of CPU per row squared: a trial's
    share grows with the width, so stacks of one row are the fastest."""

    def __init__(self) -> None:
        self.__dict__.update(tiny().__dict__)
        self.name = "tests.test_batched_minibatch:slow"

    def batch_losses(self, params: dict[str, torch.Tensor], state: TrialState,
                     batch: torch.Tensor) -> torch.Tensor:
        rows = next(iter(params.values())).shape[0]
        spin(0.005 * rows ** 2)  # the cost model of this objective, not a wait for an event
        return super().batch_losses(params, state, batch)


def spin(seconds: float) -> None:
    """Keep this thread's CPU busy for ``seconds`` of its CPU time (what the probe clocks)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_the_width_is_what_measures_fastest_and_the_size_what_was_asked() -> None:
    fast = choose_batch(objectives.build("rebalance"), 25, 100, "cpu")
    assert (fast.size, fast.width) == (25, 25)
    assert [w for w, _ in fast.step_ms] == [1, 4, 25]
    assert fast.step_ms[2][1] < fast.step_ms[1][1] < fast.step_ms[0][1]
    slow = choose_batch(SlowWhenWide(), 2, 3, "cpu")  # 5 ms a trial alone, 10 ms stacked
    assert (slow.size, slow.width) == (2, 1) and slow.step_ms[0][1] < slow.step_ms[1][1]
    assert slow.describe().startswith("trials run 2 at a time, in stacks of 1 row: a step "
                                      "costs a trial ")
    broken = choose_batch(Broken(), 25, 3, "cpu")  # its trials fail, and say why, later
    assert broken.size == 25 and broken.reason == "not measured: ObjectiveStartError"
    assert choose_batch(SlowWhenWide(), 1, 3, "cpu").describe() == (
        "trials run 1 at a time (asked for)")


class Reports:
    """Shared by every row: what was reported, and whether every row still training had
    reported an epoch before any row was judged on it."""

    def __init__(self) -> None:
        self.reported: dict[int, set[int]] = {}  # epoch -> rows
        self.judged: dict[int, set[int]] = {}
        self.lockstep = True

    def observer(self, row: int, prune_at: int | None = None) -> Any:
        reports = self

        class Row:
            def on_report(self, stats: EpochStats) -> None:
                reports.reported.setdefault(stats.start, set()).add(row)

            def on_chunk(self, stats: EpochStats) -> bool:
                judged = reports.judged.setdefault(stats.start, set())
                ahead = reports.reported[stats.start] - judged
                reports.lockstep &= len(ahead) + len(judged) == len(
                    reports.reported[stats.start]) and row in ahead
                judged.add(row)
                return prune_at is not None and stats.start >= prune_at

            def on_end(self, result: TrainResult) -> None:
                return None

        return Row()


def test_stacks_of_any_width_train_in_lockstep_to_the_same_results(
        with_dropout: DatasetObjective) -> None:
    """Five trials in stacks of two rows (2 + 2 + 1) and in one stack: every row reports
    each epoch before any is judged on it, rows pruned at epochs 1 and 2 leave their stacks,
    and every result equals the one-stack result (float64)."""
    hps = configs("adam", "cosine") + configs("momentum", "step")[:2]
    prune_at = [None, 1, None, 2, None]
    runs = {}
    for width in (2, None):
        reports = Reports()
        observers = [(reports.observer(r, p),) for r, p in enumerate(prune_at)]
        runs[width] = train_batch(with_dropout, hps, EPOCHS, chunk=1, observers=observers,
                                  width=width)
        assert reports.lockstep
        assert [len(reports.reported[e]) for e in range(EPOCHS)] == [5, 5, 4, 3]
    assert [r.status for r in runs[2]] == ["complete", "pruned", "complete", "pruned",
                                           "complete"]
    for wide, narrow in zip(runs[None], runs[2], strict=True):
        assert_same(narrow, wide)


def slow_objective() -> SlowWhenWide:
    return SlowWhenWide()


def test_a_sweep_logs_and_tags_its_measured_batch_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    storage, tracking = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    spec = f"{__name__}:slow_objective"
    with caplog.at_level(logging.INFO, logger="sweeps.cli.session"):
        assert run.main(["--objective", spec, "--n-trials", "3", "--epochs", "2", "--batch", "2",
                         "--study", "slow", "--storage", storage, "--tracking-uri", tracking,
                         "--quiet", "--no-plots"]) == 0
    lines = [r.getMessage() for r in caplog.records if "trials run " in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("trials run 2 at a time, in stacks of 1 row")
    study = optuna.load_study(study_name="slow", storage=storage)
    client = MlflowClient(tracking_uri=tracking)
    parent = client.get_run(study.trials[0].user_attrs[RUN_ID_ATTR]).data.tags[
        "mlflow.parentRunId"]
    tags = client.get_run(parent).data.tags
    assert tags["trial_batch"] == "2" and tags["trial_batch_width"] == "1"
    assert tags["trial_batch_reason"] == lines[0]
    assert len(counted_trials(study)) == 3
