"""The training loop on mini-batch objectives: an epoch is one pass over the batches, the
statistics are means over its steps (against a plain PyTorch loop), validation after each
epoch, the same batches in every trial, exact re-runs, fresh BatchNorm statistics per trial
(batched trials of mini-batch objectives: ``tests/sweeps/batched/test_batched_minibatch.py``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from objectives import TrialState
from objectives.dataset import DatasetObjective, accuracy
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import Observer, TrainResult, train
from sweeps.training.stats import EPOCH_METRICS, EpochStats

try:
    from minibatch_objectives import HELD_OUT, ROWS, data, line, model, tiny
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import HELD_OUT, ROWS, data, line, model, tiny

CPU = torch.device("cpu")
EPOCHS = 4
EXTRA = ("val_loss", "val_accuracy")


class Counting(DatasetObjective):
    """``tiny``'s objective that keeps every batch it was asked to train."""

    def __init__(self, **kwargs: Any) -> None:
        base = tiny(**kwargs)
        self.__dict__.update(base.__dict__)
        self.seen: list[list[int]] = []

    def batch_loss(self, params: dict[str, torch.Tensor], state: TrialState,
                   batch: torch.Tensor) -> torch.Tensor:
        self.seen.append(batch.tolist())
        return super().batch_loss(params, state, batch)


@pytest.mark.parametrize(("batch_size", "drop_last"), [(8, False), (8, True), (37, False),
                                                       (5, True)])
def test_an_epoch_is_one_pass_over_the_batches(batch_size: int, drop_last: bool) -> None:
    objective = Counting(batch_size=batch_size, drop_last=drop_last)
    result = train(objective, Hyperparams("sgd", 0.05), EPOCHS)
    steps = ROWS // batch_size if drop_last else math.ceil(ROWS / batch_size)
    assert result.status == "complete" and result.epochs_run == EPOCHS
    assert len(objective.seen) == EPOCHS * steps
    assert [len(b) for b in objective.seen[:steps]] == [len(b) for b in
                                                       objective.batches(0, CPU)]


def test_every_trial_sees_the_same_batches_in_the_same_order() -> None:
    objective = Counting()
    train(objective, Hyperparams("sgd", 0.05), EPOCHS)
    first, objective.seen = objective.seen, []
    train(objective, Hyperparams("adam", 0.01, "cosine"), EPOCHS)
    assert objective.seen == first
    expected = [b.tolist() for e in range(EPOCHS) for b in objective.batches(e, CPU)]
    assert first == expected


def _assert_same_run(left: TrainResult, right: TrainResult) -> None:
    assert left.status == right.status and left.final_loss == right.final_loss
    assert left.history.names == right.history.names
    for name in left.history.names:
        np.testing.assert_array_equal(left.history.metric(name), right.history.metric(name),
                                      err_msg=name)
    assert left.params is not None and right.params is not None
    for key in left.params:
        assert torch.equal(left.params[key], right.params[key]), key


def test_a_rerun_reproduces_the_trial_exactly_after_other_trials() -> None:
    """float64 on the CPU, with BatchNorm and dropout: the trial owns its state, so another
    trial in between changes nothing."""
    objective = tiny(dropout=0.5)
    hp = Hyperparams("adam", 0.02, "step", {"step_size": 2.0, "step_gamma": 0.5})
    first = train(objective, hp, EPOCHS)
    other = train(objective, Hyperparams("sgd", 0.5, "none"), EPOCHS)
    again = train(tiny(dropout=0.5), hp, EPOCHS, chunk=1)  # rebuilt, as from an export
    rerun = train(objective, hp, EPOCHS, chunk=3)
    assert other.final_loss != first.final_loss
    _assert_same_run(first, again)
    _assert_same_run(first, rerun)


def test_batchnorm_statistics_start_fresh_in_every_trial() -> None:
    objective = tiny()
    fresh = {k: v.clone() for k, v in objective.start_trial(CPU).buffers.items()}
    train(objective, Hyperparams("sgd", 0.5), EPOCHS)
    after = objective.start_trial(CPU).buffers
    for key, value in fresh.items():
        assert torch.equal(after[key], value), key
    assert fresh["1.num_batches_tracked"].item() == 0


def reference_loop(optimizer: str, lr: float, scheduler: str, epochs: int, batch_size: int,
                   dropout: float) -> dict[str, list[float]]:
    """The per-epoch means of SPEC 5's per-step values and the validation metrics, from a
    plain PyTorch loop on the module itself (``.item()`` at every step). The batches come from
    the objective (their order is tested above); dropout draws from the global generator,
    seeded as the objective seeds its trial's."""
    objective = tiny(batch_size=batch_size, dropout=dropout)
    net = model(dropout)
    inputs, targets = data(0)
    val_inputs, val_targets = data(1, HELD_OUT)
    leaves = list(net.parameters())
    numel = sum(p.numel() for p in leaves)
    opt = {"momentum": lambda: torch.optim.SGD(leaves, lr=lr, momentum=0.9),
           "adam": lambda: torch.optim.Adam(leaves, lr=lr)}[optimizer]()
    steps = objective.steps_per_epoch
    sched = {"none": None,
             "onecycle": torch.optim.lr_scheduler.OneCycleLR(
                 opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.3,
                 cycle_momentum=False) if scheduler == "onecycle" else None,
             "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau(
                 opt, factor=0.5, patience=0) if scheduler == "plateau" else None}[scheduler]
    out: dict[str, list[float]] = {m: [] for m in (*EPOCH_METRICS, *EXTRA)}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for epoch in range(epochs):
            net.train()
            per_step: dict[str, list[float]] = {m: [] for m in EPOCH_METRICS}
            for batch in objective.batches(epoch, CPU):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(net(inputs[batch]), targets[batch])
                loss.backward()
                before = [p.detach().clone() for p in leaves]
                per_step["loss"].append(loss.item())
                per_step["grad_abs_mean"].append(
                    sum(p.grad.abs().sum().item() for p in leaves) / numel)
                per_step["lr"].append(opt.param_groups[0]["lr"])
                opt.step()
                if scheduler == "onecycle":
                    sched.step()
                update = sum((p.detach() - b).abs().sum().item() for p, b in zip(leaves, before))
                size = sum(b.abs().sum().item() for b in before)
                per_step["update_abs_mean"].append(update / numel)
                per_step["update_ratio"].append(update / size)
            for metric, values in per_step.items():
                out[metric].append(float(np.mean(values)))
            if scheduler == "plateau":
                sched.step(out["loss"][-1])
            net.eval()
            with torch.no_grad():
                outputs = torch.cat([net(x) for x in val_inputs.split(batch_size)])
            out["val_loss"].append(nn.functional.cross_entropy(outputs, val_targets).item())
            out["val_accuracy"].append(accuracy(outputs, val_targets).item())
    return out


@pytest.mark.parametrize(("optimizer", "lr", "scheduler"), [
    ("momentum", 0.1, "none"), ("adam", 0.05, "onecycle"), ("adam", 0.05, "plateau")])
def test_statistics_are_means_over_the_steps_of_a_plain_pytorch_loop(
        optimizer: str, lr: float, scheduler: str) -> None:
    options = {"plateau_factor": 0.5, "plateau_patience": 0.0} if scheduler == "plateau" else {}
    expected = reference_loop(optimizer, lr, scheduler, EPOCHS, 8, 0.3)
    hp = Hyperparams(optimizer, lr, scheduler, options)
    results = [train(tiny(), hp, EPOCHS, chunk=chunk) for chunk in (1, 3, EPOCHS)]
    for result in results:
        assert result.status == "complete"
        for name in (*EPOCH_METRICS, *EXTRA):
            np.testing.assert_allclose(result.history.metric(name), expected[name],
                                       rtol=1e-12, atol=0, err_msg=name)
        assert result.final_loss == result.history.loss[-1]
        assert result.best_loss == min(result.history.loss)
    for other in results[1:]:  # chunking changes no number
        _assert_same_run(results[0], other)


def test_onecycle_steps_per_batch_over_every_step_of_the_run() -> None:
    """Its lr of an epoch is the mean of torch's one-cycle table over that epoch's steps."""
    objective = tiny()
    steps = objective.steps_per_epoch
    result = train(objective, Hyperparams("adam", 0.05, "onecycle"), EPOCHS)
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.05)
    cycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=EPOCHS * steps,
                                                pct_start=0.3, cycle_momentum=False)
    table = []
    for _ in range(EPOCHS * steps):
        table.append(opt.param_groups[0]["lr"])
        opt.step()
        cycle.step()
    expected = np.asarray(table).reshape(EPOCHS, steps).mean(axis=1)
    np.testing.assert_allclose(result.history.lr, expected, rtol=1e-15)
    assert table[-1] < 1e-6  # annealed at the run's last step


class Collector(Observer):
    def __init__(self) -> None:
        self.chunks: list[EpochStats] = []
        self.result: TrainResult | None = None

    def on_chunk(self, stats: EpochStats) -> bool:
        self.chunks.append(stats)
        return False

    def on_end(self, result: TrainResult) -> None:
        self.result = result


def test_validation_metrics_reach_observers_and_the_frame() -> None:
    collector = Collector()
    result = train(tiny(), Hyperparams("sgd", 0.1), 5, observers=(collector,), chunk=2,
                   per_tensor=False)  # per-tensor metrics: test_tensor_stats.py
    assert [len(c) for c in collector.chunks] == [2, 2, 1]
    assert all(tuple(c.extra) == EXTRA for c in collector.chunks)
    history = result.history
    assert history.names == (*EPOCH_METRICS, *EXTRA)
    np.testing.assert_array_equal(EpochStats.concat(collector.chunks).metric("val_loss"),
                                  history.metric("val_loss"))
    assert np.isfinite(history.metric("val_loss")).all()
    assert history.head(2).metric("val_accuracy").tolist() == \
        history.metric("val_accuracy")[:2].tolist()
    frame = history.to_frame()
    assert list(frame.columns) == [*EPOCH_METRICS, *EXTRA]
    assert frame.index.tolist() == list(range(5))
    assert EpochStats.empty().names == EPOCH_METRICS


def test_a_diverging_trial_fails_at_its_first_non_finite_epoch() -> None:
    result = train(line(), Hyperparams("sgd", 1e8), 12, chunk=2)
    assert result.status == "failed" and result.failure is not None
    assert result.failure.startswith("non-finite")
    assert 0 < result.failure_epoch == result.epochs_run < 12
    assert np.isfinite(result.history.loss).all() and math.isnan(result.final_loss)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@cuda
def test_a_trial_on_cuda_follows_the_cpu_trajectory_without_dropout() -> None:
    hp = Hyperparams("adam", 0.05, "onecycle")
    cpu = train(tiny(dropout=0.0), hp, EPOCHS)
    gpu = train(tiny(dropout=0.0), hp, EPOCHS, device="cuda")
    assert gpu.status == cpu.status == "complete"
    for name in cpu.history.names:
        np.testing.assert_allclose(gpu.history.metric(name), cpu.history.metric(name),
                                   rtol=1e-9, err_msg=name)
    assert gpu.params is not None and gpu.params["0.weight"].device.type == "cuda"


@cuda
def test_dropout_on_cuda_draws_from_the_trials_generator() -> None:
    hp = Hyperparams("sgd", 0.1)
    global_state = torch.cuda.get_rng_state()
    first = train(tiny(dropout=0.5), hp, EPOCHS, device="cuda")
    again = train(tiny(dropout=0.5), hp, EPOCHS, device="cuda")
    assert torch.equal(torch.cuda.get_rng_state(), global_state)
    for name in first.history.names:
        np.testing.assert_allclose(again.history.metric(name), first.history.metric(name),
                                   rtol=1e-12, err_msg=name)


def test_the_run_starts_from_its_first_batchs_loss() -> None:
    """Epoch losses are means over steps; the verdict compares with the loss before the
    first step (the first batch's, at the initial parameters)."""
    objective = tiny(dropout=0.0)
    state = objective.start_trial(torch.device("cpu"))
    params = objective.init_params(torch.device("cpu"))
    first = objective.batch_loss(params, state, objective.batches(0, torch.device("cpu"))[0])
    result = train(objective, Hyperparams("sgd", 0.1), 3)
    assert result.history.initial_loss == pytest.approx(first.item(), rel=1e-12)
    blown = train(objective, Hyperparams("sgd", 100.0), 3)  # 0.97 -> 6e5 within epoch 0
    assert blown.verdict is not None and blown.verdict.name == "unstable"
    last = blown.history.loss[-1]
    assert blown.verdict.reason.startswith(  # judged from the first batch, not epoch 0's mean
        f"the loss rose {(last - first.item()) / first.item():.1%} over the run "
        f"({first.item():.3g} -> {last:.3g})")
