"""The digits CNN: its images, its BatchNorm2d statistics and dropout masks belong to the trial,
and ``evaluate`` scores in eval mode with the train split's BatchNorm statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from objectives.digits import load_splits
from objectives.digits_cnn import DigitsCNN

CPU = torch.device("cpu")
NORMS = ("1", "4")  # the two BatchNorm2d layers of the Sequential


@pytest.fixture(scope="module")
def cnn() -> DigitsCNN:
    return DigitsCNN(channels=4, batch_size=32)


def test_the_parameters_follow_channels() -> None:
    shapes = {key: tuple(value.shape) for key, value in
              DigitsCNN(channels=4).init_params(CPU).items()}
    assert shapes == {"0.weight": (4, 1, 3, 3), "0.bias": (4,), "1.weight": (4,), "1.bias": (4,),
                      "3.weight": (8, 4, 3, 3), "3.bias": (8,), "4.weight": (8,), "4.bias": (8,),
                      "9.weight": (10, 8 * 4 * 4), "9.bias": (10,)}


def test_a_step_updates_the_trials_batchnorm2d_statistics_only(cnn: DigitsCNN) -> None:
    fresh = {k: v.clone() for k, v in cnn.start_trial(CPU).buffers.items()}
    state = cnn.start_trial(CPU)
    cnn.batch_loss(cnn.init_params(CPU), state, cnn.batches(0, CPU)[0])
    for norm in NORMS:
        assert not torch.equal(state.buffers[f"{norm}.running_mean"],
                               fresh[f"{norm}.running_mean"])
        assert not torch.equal(state.buffers[f"{norm}.running_var"],
                               fresh[f"{norm}.running_var"])
        assert state.buffers[f"{norm}.num_batches_tracked"].item() == 1
    for key, value in cnn.start_trial(CPU).buffers.items():  # the next trial starts fresh
        assert torch.equal(value, fresh[key]), key


def test_dropout_masks_come_from_the_trials_generator(cnn: DigitsCNN) -> None:
    params = cnn.init_params(CPU)
    batch = cnn.batches(0, CPU)[0]
    global_state = torch.random.get_rng_state()
    fresh = [cnn.batch_loss(params, cnn.start_trial(CPU), batch) for _ in range(2)]
    assert torch.equal(fresh[0], fresh[1])  # a fresh trial draws the same masks
    assert torch.equal(torch.random.get_rng_state(), global_state)
    state = cnn.start_trial(CPU)
    first, second = (cnn.batch_loss(params, state, batch) for _ in range(2))
    assert not torch.equal(first, second)  # within a trial the stream moves on


def test_validation_is_in_eval_mode_with_the_trials_statistics(cnn: DigitsCNN) -> None:
    params = cnn.init_params(CPU)
    state = cnn.start_trial(CPU)
    for batch in cnn.batches(0, CPU)[:3]:
        cnn.batch_loss(params, state, batch)
    first, second = cnn.validate(params, state), cnn.validate(params, state)
    assert first == second  # no dropout, no statistics updated
    fresh = cnn.validate(params, cnn.start_trial(CPU))
    assert first["val_loss"] != fresh["val_loss"]  # the trial's running statistics are used


def test_evaluate_uses_the_train_splits_batchnorm_statistics(cnn: DigitsCNN) -> None:
    params = {k: p.requires_grad_() for k, p in cnn.init_params(CPU).items()}
    state = cnn.start_trial(CPU)
    optimizer = torch.optim.SGD(list(params.values()), lr=0.05)
    for batch in cnn.batches(0, CPU):
        optimizer.zero_grad()
        cnn.batch_loss(params, state, batch).backward()
        optimizer.step()
    params = {k: p.detach() for k, p in params.items()}
    # the same network as a plain module: population statistics of the train split, eval mode
    reference = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
                              nn.Linear(8 * 4 * 4, 10))
    reference.load_state_dict(params, strict=False)  # the buffers are measured below
    splits = load_splits(shape=(1, 8, 8))
    for layer in reference.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.reset_running_stats()
            layer.momentum = None
    reference.eval()
    for layer in reference.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.train()
    with torch.no_grad():
        reference(splits.train[0])
        reference.eval()
        predicted = {name: reference(inputs).argmax(dim=1) for name, (inputs, _) in
                     (("train", splits.train), ("test", splits.test))}
    expected = {f"{name}_accuracy": (predicted[name] == targets).double().mean().item()
                for name, (_, targets) in (("train", splits.train), ("test", splits.test))}
    global_state = torch.random.get_rng_state()
    assert cnn.evaluate(params) == pytest.approx(expected, abs=1e-12)
    assert torch.equal(torch.random.get_rng_state(), global_state)
    assert cnn.evaluate(params) == cnn.evaluate(params)


def test_a_trials_test_accuracy_uses_its_own_batchnorm_statistics(cnn: DigitsCNN) -> None:
    """The sweep scores a trial's final parameters with the running statistics that trial
    built (the ones its validation used), not statistics measured again."""
    from objectives import evaluate
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import train

    result = train(cnn, Hyperparams("adam", 0.01), 2)
    assert result.params is not None and result.buffers is not None
    assert set(result.buffers) == set(cnn.start_trial(CPU).buffers)
    reference = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
                              nn.Linear(8 * 4 * 4, 10))
    reference.load_state_dict({**result.params, **result.buffers}, strict=True)
    reference.eval()
    splits = load_splits(shape=(1, 8, 8))
    with torch.no_grad():
        expected = {f"{name}_accuracy": (reference(inputs).argmax(dim=1) == targets)
                    .double().mean().item()
                    for name, (inputs, targets) in (("train", splits.train),
                                                    ("test", splits.test))}
    assert evaluate(cnn, result.params, result.buffers) == pytest.approx(expected, abs=1e-12)
    assert evaluate(cnn, result.params, result.buffers) != evaluate(cnn, result.params)
