"""The spread of each epoch's step losses (``EpochStats.loss_std``, ``steps``, ``loss_noise``):
what the step recorders sum on the device, checked against every step's loss; kept by
``head`` and ``concat``; the same for a trial alone and as a row of a batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sweeps.batched import train_batch
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train
from sweeps.training.stats import EpochStats
from sweeps.training.step_recorder import RowStepRecorder, StepRecorder
from tests.minibatch_objectives import tiny

LOSSES = [[1.0, 2.0, 4.0], [3.0], [0.5, 0.25, 0.5, 0.75]]  # the step losses of three epochs


def recorded(losses: list[list[float]]) -> EpochStats:
    params = [torch.zeros(3, dtype=torch.float64, requires_grad=True)]
    recorder = StepRecorder(params, len(losses))
    for epoch in losses:
        for value in epoch:
            recorder.before_step(torch.tensor(value, dtype=torch.float64),
                                 [torch.ones(3, dtype=torch.float64)])
            recorder.after_step(0.1)
        recorder.end_epoch({})
    return recorder.drain()


def test_the_spread_is_the_standard_deviation_of_the_epochs_step_losses() -> None:
    stats = recorded(LOSSES)
    assert stats.loss_std is not None and stats.steps is not None
    first, last = (float(np.std(LOSSES[i], ddof=1)) for i in (0, 2))
    np.testing.assert_allclose(stats.loss_std[[0, 2]], np.array([first, last]), rtol=1e-12)
    assert math.isnan(stats.loss_std[1])  # one step: no spread
    np.testing.assert_array_equal(stats.steps, [3, 1, 4])
    np.testing.assert_allclose(stats.loss_noise, np.array([first / math.sqrt(3), 0.0, last / 2]),
                               rtol=1e-12)


def test_a_training_run_records_the_spread_of_the_losses_it_back_propagated() -> None:
    history = train(tiny(), Hyperparams("adam", 0.01), 4, chunk=3, log_steps=True).history
    assert history.trace is not None and history.loss_std is not None
    epochs = np.split(history.trace.loss, np.cumsum(history.trace.steps)[:-1])
    np.testing.assert_allclose(history.loss_std,
                               np.array([np.std(e, ddof=1) for e in epochs]), rtol=1e-9)
    np.testing.assert_array_equal(history.steps, history.trace.steps)


def test_each_row_of_a_batch_has_its_own_spread_as_its_trial_alone() -> None:
    hps = [Hyperparams("sgd", 0.05), Hyperparams("adam", 0.01, "cosine")]
    batched = train_batch(tiny(dropout=0.0), hps, 3)
    for hp, result in zip(hps, batched):
        alone = train(tiny(dropout=0.0), hp, 3).history
        assert result.history.loss_std is not None and alone.loss_std is not None
        np.testing.assert_allclose(result.history.loss_std, alone.loss_std, rtol=1e-9)
        np.testing.assert_array_equal(result.history.steps, alone.steps)


def test_rows_are_kept_apart() -> None:
    params = [torch.zeros((2, 3), dtype=torch.float64)]
    recorder = RowStepRecorder(params, 1)
    for row_losses in ([1.0, 10.0], [2.0, 10.0], [6.0, 10.0]):
        recorder.before_step(torch.tensor(row_losses, dtype=torch.float64),
                             [torch.ones((2, 3), dtype=torch.float64)])
        recorder.after_step(np.array([0.1, 0.1]))
    recorder.end_epoch({})
    first, second = recorder.drain()
    assert first.loss_std is not None and second.loss_std is not None
    assert first.loss_std[0] == pytest.approx(np.std([1.0, 2.0, 6.0], ddof=1), rel=1e-12)
    assert second.loss_std[0] == 0.0


def test_head_and_concat_keep_the_spread_and_a_part_without_drops_it() -> None:
    stats = recorded(LOSSES)
    head = stats.head(2)
    assert head.steps is not None and list(head.steps) == [3, 1]
    joined = EpochStats.concat([stats.head(1), recorded(LOSSES[1:])])
    assert joined.steps is not None and list(joined.steps) == [3, 1, 4]
    np.testing.assert_array_equal(joined.loss_std, stats.loss_std)
    one = np.ones(1)
    without = EpochStats(3, one, one, one, one, one)
    assert EpochStats.concat([stats, without]).loss_std is None
    assert without.loss_std is None and list(without.loss_noise) == [0.0]


@pytest.mark.parametrize(("loss_std", "steps", "message"), [
    (np.ones(1), None, "give both or neither"),
    (np.ones(2), np.ones(1, dtype=np.int64), "one value per epoch"),
])
def test_a_spread_must_come_with_its_steps(loss_std: np.ndarray, steps: np.ndarray | None,
                                           message: str) -> None:
    one = np.ones(1)
    with pytest.raises(ValueError, match=message):
        EpochStats(0, one, one, one, one, one, loss_std=loss_std, steps=steps)


def test_a_drain_of_no_epochs_has_an_empty_spread() -> None:
    stats = StepRecorder([torch.zeros(3, dtype=torch.float64)], 2).drain()
    assert stats.loss_std is not None and stats.steps is not None
    assert len(stats.loss_std) == len(stats.steps) == len(stats) == 0
