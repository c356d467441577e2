"""``log_steps``: every step's loss and learning rate of a mini-batch run, kept on the device
and moved with each chunk (``EpochStats.trace``). The step losses are a plain PyTorch loop's,
their epoch means the epoch ``loss``, the learning rates the optimizer's at each step; steps
count from 0 across the run, whatever the chunking; ``head`` and ``concat`` keep the trace
with its epochs; without the option nothing changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import Observer, train
from sweeps.training.recorder import StepRecorder
from sweeps.training.stats import EPOCH_METRICS, STEP_METRICS, EpochStats, StepTrace

try:
    from minibatch_objectives import data, line, model, tiny
    from toy_objectives import Quadratic
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import data, line, model, tiny
    from tests.toy_objectives import Quadratic

CPU = torch.device("cpu")
EPOCHS = 4
ONECYCLE = Hyperparams("adam", 0.05, "onecycle")


class Chunks(Observer):
    def __init__(self) -> None:
        self.chunks: list[EpochStats] = []

    def on_chunk(self, stats: EpochStats) -> bool:
        self.chunks.append(stats)
        return False


def plain_loop(epochs: int) -> tuple[list[float], list[float]]:
    """Each step's loss (``.item()``) and the optimizer's lr for it, from a plain PyTorch
    loop over ``tiny(dropout=0)``'s batches with torch's one-cycle schedule per step."""
    objective = tiny(dropout=0.0)
    net = model(0.0)
    inputs, targets = data(0)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    cycle = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.05, total_steps=epochs * objective.steps_per_epoch, pct_start=0.3,
        cycle_momentum=False)
    losses, lrs = [], []
    net.train()
    for epoch in range(epochs):
        for batch in objective.batches(epoch, CPU):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(inputs[batch]), targets[batch])
            loss.backward()
            losses.append(loss.item())
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            cycle.step()
    return losses, lrs


def test_every_step_is_the_plain_loops_and_its_epoch_means_are_the_epoch_loss() -> None:
    objective = tiny(dropout=0.0)
    steps = objective.steps_per_epoch
    result = train(objective, ONECYCLE, EPOCHS, log_steps=True)
    assert result.status == "complete"
    history = result.history
    trace = history.trace
    assert trace is not None
    assert trace.start == 0 and trace.steps.tolist() == [steps] * EPOCHS
    assert len(trace) == EPOCHS * steps
    assert trace.indices.tolist() == list(range(EPOCHS * steps))
    assert trace.loss.dtype == trace.lr.dtype == np.float64
    losses, lrs = plain_loop(EPOCHS)
    np.testing.assert_allclose(trace.loss, losses, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(trace.lr, lrs)  # the very floats the optimizer used
    assert len(set(lrs)) == len(lrs)  # one-cycle: a new lr at every step
    np.testing.assert_allclose(trace.epoch_means(), history.loss, rtol=1e-13, atol=0)
    np.testing.assert_allclose(trace.lr.reshape(EPOCHS, steps).mean(axis=1), history.lr,
                               rtol=1e-15, atol=0)
    assert trace.metric("step_loss") is trace.loss and trace.metric("step_lr") is trace.lr


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunks_number_their_steps_across_the_run(chunk: int) -> None:
    whole = train(tiny(), ONECYCLE, EPOCHS, log_steps=True).history
    observer = Chunks()
    result = train(tiny(), ONECYCLE, EPOCHS, observers=(observer,), chunk=chunk,
                   log_steps=True)
    steps = tiny().steps_per_epoch
    start = 0
    for part in observer.chunks:
        assert part.trace is not None and part.trace.start == start
        assert len(part.trace.steps) == len(part) and len(part.trace) == len(part) * steps
        np.testing.assert_allclose(part.trace.epoch_means(), part.loss, rtol=1e-13, atol=0)
        start += len(part.trace)
    assert start == EPOCHS * steps
    for trace in (result.history.trace, EpochStats.concat(observer.chunks).trace):
        assert trace is not None and whole.trace is not None
        assert trace.start == 0
        for name in STEP_METRICS:  # chunking changes no number
            np.testing.assert_array_equal(trace.metric(name), whole.trace.metric(name))


def test_without_log_steps_there_is_no_trace_and_the_same_statistics() -> None:
    observer = Chunks()
    off = train(tiny(), ONECYCLE, EPOCHS, observers=(observer,), chunk=2)
    on = train(tiny(), ONECYCLE, EPOCHS, chunk=2, log_steps=True)
    assert off.history.trace is None and all(c.trace is None for c in observer.chunks)
    assert on.history.names == off.history.names
    for name in off.history.names:
        np.testing.assert_array_equal(on.history.metric(name), off.history.metric(name))
    assert on.final_loss == off.final_loss


def test_a_full_batch_objective_ignores_log_steps() -> None:
    result = train(Quadratic(), Hyperparams("sgd", 0.1), 5, log_steps=True)
    assert result.status == "complete" and result.history.trace is None


def test_a_diverging_run_keeps_the_steps_of_its_finite_epochs() -> None:
    diverging = line()
    result = train(diverging, Hyperparams("sgd", 1e8), 12, chunk=2, log_steps=True)
    assert result.status == "failed" and 0 < result.epochs_run < 12
    trace = result.history.trace
    assert trace is not None and len(trace.steps) == result.epochs_run
    assert len(trace) == result.epochs_run * diverging.steps_per_epoch
    assert trace.indices.tolist() == list(range(len(trace)))


def _stats(start: int, steps: list[int], first_step: int) -> EpochStats:
    n, total = len(steps), sum(steps)
    loss = np.arange(first_step, first_step + total, dtype=float) + 0.5
    trace = StepTrace(first_step, np.asarray(steps, dtype=np.int64), loss, loss / 100)
    return EpochStats(start, trace.epoch_means(), *(np.ones(n) for _ in EPOCH_METRICS[1:]),
                      trace=trace)


def test_head_and_concat_keep_each_epochs_steps() -> None:
    first, second = _stats(0, [3, 2, 4], 0), _stats(3, [1, 3], 9)
    whole = EpochStats.concat([first, second])
    assert whole.trace is not None
    assert whole.trace.start == 0 and whole.trace.steps.tolist() == [3, 2, 4, 1, 3]
    assert whole.trace.indices.tolist() == list(range(13))
    np.testing.assert_array_equal(whole.trace.loss, np.arange(13) + 0.5)
    for n in range(len(whole) + 1):
        head = whole.head(n)
        assert head.trace is not None and len(head.trace.steps) == len(head) == n
        cut = sum([3, 2, 4, 1, 3][:n])
        np.testing.assert_array_equal(head.trace.loss, whole.trace.loss[:cut])
        np.testing.assert_array_equal(head.trace.lr, whole.trace.lr[:cut])
        np.testing.assert_array_equal(head.trace.epoch_means(), head.loss)
    again = EpochStats.concat([whole.head(2), second.head(0), EpochStats.concat([
        _stats(2, [4], 5), second])])
    assert again.trace is not None
    np.testing.assert_array_equal(again.trace.loss, whole.trace.loss)
    assert EpochStats.concat([first, EpochStats(3, *(np.ones(1) for _ in EPOCH_METRICS))]
                             ).trace is None  # a part without steps: no trace
    assert EpochStats.empty().trace is None and EpochStats.concat([]).trace is None


def test_a_trace_must_fit_its_epochs() -> None:
    with pytest.raises(ValueError, match="sum"):
        StepTrace(0, np.array([2, 2]), np.zeros(3), np.zeros(3))
    trace = StepTrace(0, np.array([2, 2]), np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="3 epochs"):
        EpochStats(0, *(np.ones(3) for _ in EPOCH_METRICS), trace=trace)


def test_the_recorder_grows_for_longer_epochs_and_drops_a_partial_one() -> None:
    """Room for one step an epoch, epochs of 1, 3 and 5 steps: the buffer grows on the
    device; a drain in the middle of an epoch drops that epoch's steps."""
    param = torch.ones(3, dtype=torch.float64)
    recorder = StepRecorder([param], 3, step_trace=1)
    losses = []
    for steps in (1, 3, 5):
        for _ in range(steps):
            loss = torch.tensor(float(len(losses)), dtype=torch.float64)
            recorder.before_step(loss, [torch.ones(3, dtype=torch.float64)])
            param.sub_(0.01)
            recorder.after_step(0.01 * (len(losses) + 1))
            losses.append(loss.item())
        recorder.end_epoch({})
    stats = recorder.drain()
    assert stats.trace is not None and stats.trace.steps.tolist() == [1, 3, 5]
    np.testing.assert_array_equal(stats.trace.loss, losses)
    np.testing.assert_allclose(stats.trace.lr, 0.01 * np.arange(1, 10), rtol=1e-15)
    np.testing.assert_array_equal(stats.trace.epoch_means(), stats.loss)
    for _ in range(2):  # a partial epoch, then the run stops
        recorder.before_step(torch.tensor(1.0, dtype=torch.float64),
                             [torch.ones(3, dtype=torch.float64)])
        recorder.after_step(0.5)
    recorder.end_epoch({})
    recorder.before_step(torch.tensor(2.0, dtype=torch.float64),
                         [torch.ones(3, dtype=torch.float64)])
    recorder.after_step(0.5)
    last = recorder.drain()  # epoch 3 ended with 2 steps; epoch 4's one step is dropped
    assert last.trace is not None and last.trace.start == 9
    assert last.trace.steps.tolist() == [2] and last.trace.loss.tolist() == [1.0, 1.0]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@cuda
def test_on_cuda_the_trace_follows_the_cpu_one_and_adds_no_host_synchronisation() -> None:
    import warnings

    cpu = train(tiny(dropout=0.0), ONECYCLE, EPOCHS, log_steps=True).history.trace

    def synchronisations(log_steps: bool) -> tuple[int, StepTrace | None]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                result = train(tiny(dropout=0.0), ONECYCLE, EPOCHS, device="cuda",
                               log_steps=log_steps)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        count = sum("synchroniz" in str(w.message) for w in caught)
        return count, result.history.trace

    off, _ = synchronisations(False)
    on, gpu = synchronisations(True)
    assert on == off  # the step losses travel with each chunk's one transfer
    assert cpu is not None and gpu is not None
    np.testing.assert_allclose(gpu.loss, cpu.loss, rtol=1e-9)
    np.testing.assert_array_equal(gpu.lr, cpu.lr)
