"""The stacked lowering (``objectives.stacked``): a stack's rows run as one wider network and
compute what ``vmap`` of the module computes, in training (losses, gradients, BatchNorm
statistics, dropout masks) and in eval mode; a network it does not follow runs under vmap."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

from objectives.dataset import DatasetObjective
from objectives.stacked import lowering
from sweeps.batched.stack import stacked

CPU = torch.device("cpu")
ROWS = 3


def every_layer() -> nn.Sequential:
    """Each layer kind the lowering follows, in float64: a convolution of the shared input,
    a grouped one, BatchNorm2d, pools, dropout of images and of features, Flatten, Linear
    with and without bias, BatchNorm1d, a nested Sequential."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.BatchNorm2d(6),
                          nn.GELU()),
            nn.MaxPool2d(2), nn.Dropout(0.3), nn.AvgPool2d(1), nn.Flatten(),
            nn.Linear(24, 8, bias=False), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.2),
            nn.Linear(8, 3)).double()


class Signals(nn.Module):
    """A user's own module: 1-d convolutions with BatchNorm1d over channels, a pool, and a
    head after ``torch.flatten`` and ``F.relu`` in ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.features = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4),
                                          nn.ReLU(), nn.Conv1d(4, 4, 3, padding=1),
                                          nn.MaxPool1d(2), nn.Dropout(0.3))
            self.hidden = nn.Linear(32, 6)
            self.head = nn.Linear(6, 3)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x.flatten(2)), 1)
        return self.head(nn.functional.relu(self.hidden(x)))


class Residual(nn.Module):
    """Not a chain: the input is used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.conv(x)).flatten(1)


def objective(net: nn.Module) -> DatasetObjective:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(20, 2, 4, 4, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 3, (20,), generator=generator)
    return DatasetObjective(net, (inputs, targets), batch_size=10,
                            loss_fn=nn.functional.cross_entropy,
                            validation=(inputs[:7], targets[:7]))


def rows_of(obj: DatasetObjective) -> dict[str, torch.Tensor]:
    """Three rows: the initial parameters, each row moved apart."""
    generator = torch.Generator().manual_seed(2)
    return {key: (stacked(p, ROWS) + 0.1 * torch.randn(ROWS, *p.shape, generator=generator,
                                                        dtype=p.dtype)).requires_grad_()
            for key, p in obj.init_params(CPU).items()}


def two_steps(obj: DatasetObjective) -> tuple[list[torch.Tensor], dict[str, torch.Tensor],
                                               dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Losses of two training batches, the second's gradients, the buffers after, and the
    validation scores."""
    params = rows_of(obj)
    trial = obj.start_trial(CPU)
    state = type(trial)({k: stacked(b, ROWS) for k, b in trial.buffers.items()},
                        trial.generator)
    losses = []
    for batch in obj.batches(0, CPU):
        losses.append(obj.batch_losses(params, state, batch))
    losses[-1].sum().backward()
    grads = {k: p.grad for k, p in params.items() if p.grad is not None}
    scores = obj.validate_rows({k: p.detach() for k, p in params.items()}, state)
    return losses, grads, state.buffers, scores


@pytest.mark.parametrize("net", [every_layer, Signals], ids=["sequential-2d", "module-1d"])
def test_the_lowering_computes_what_vmap_computes_in_training_and_eval_mode(
        net: type[nn.Module]) -> None:
    lowered = objective(net())
    assert lowered._stacked is not None
    by_vmap = copy.copy(lowered)
    by_vmap._stacked = None
    first, second = two_steps(lowered), two_steps(by_vmap)
    assert lowered._stacked is not None  # it agreed with vmap at first use
    for a, b in zip(first[0], second[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert first[1].keys() == second[1].keys()
    for key in first[1]:
        torch.testing.assert_close(first[1][key], second[1][key], rtol=1e-9, atol=1e-12)
    for key in first[2]:  # running statistics, and num_batches_tracked == 2 in every row
        torch.testing.assert_close(first[2][key], second[2][key], rtol=1e-10, atol=0)
    tracked = next(key for key in first[2] if key.endswith("num_batches_tracked"))
    assert first[2][tracked].tolist() == [2] * ROWS
    for key in first[3]:
        torch.testing.assert_close(first[3][key], second[3][key], rtol=1e-10, atol=1e-12)


def test_dropout_draws_one_mask_for_every_row_as_each_row_draws_alone() -> None:
    """Three identical rows through dropout only: every row equals the module's own output
    from the same generator state."""
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(32, 3)).double()
    obj = objective(net)
    net.train()
    inputs = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    tensors = {k: stacked(p, ROWS) for k, p in obj.init_params(CPU).items()}
    torch.manual_seed(7)
    alone = net(inputs)
    torch.manual_seed(7)
    assert obj._stacked is not None
    together = obj._stacked(tensors, inputs, True)
    for row in together:
        torch.testing.assert_close(row, alone, rtol=1e-12, atol=0)


@pytest.mark.parametrize("net", [
    nn.Sequential(nn.Conv2d(2, 3, 3), nn.LayerNorm([3, 2, 2])),
    nn.Sequential(nn.Conv2d(2, 3, 3, padding="same")),
    nn.Sequential(nn.Flatten(0)),
    nn.Sequential(nn.BatchNorm2d(2, momentum=None)),
    Residual(),
], ids=["layer-norm", "padding-same", "flatten-0", "cumulative-bn", "residual"])
def test_a_network_it_does_not_follow_is_not_lowered(net: nn.Module) -> None:
    assert lowering(net) is None


def test_a_lowering_that_fails_at_first_use_leaves_the_rows_to_vmap_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """A Linear of the images' last dimension (a 4-d input): the lowering cannot follow it
    and says so; the losses are vmap's."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Linear(4, 3), nn.Flatten(),
                            nn.Linear(24, 3)).double()
    obj = objective(net)
    assert obj._stacked is not None
    by_vmap = copy.copy(obj)
    by_vmap._stacked = None
    with caplog.at_level(logging.INFO, logger="objectives.dataset"):
        first, second = two_steps(obj), two_steps(by_vmap)
    assert obj._stacked is None
    notes = [r.getMessage() for r in caplog.records if "run under vmap" in r.getMessage()]
    assert len(notes) == 1 and "a Linear of a convolution's channels" in notes[0]
    for a, b in zip(first[0], second[0], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_an_in_place_first_layer_leaves_the_batch_as_it_was() -> None:
    """A ReLU and a dropout working in place on the inputs: the data's own tensor is not
    changed (the lowering copies the shared batch for them)."""
    net = nn.Sequential(nn.ReLU(inplace=True), nn.Dropout(0.5, inplace=True), nn.Flatten(),
                        nn.Linear(32, 3)).double()
    obj = objective(net)
    assert obj._stacked is not None
    inputs = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    kept = inputs.clone()
    tensors = {k: stacked(p, ROWS) for k, p in obj.init_params(CPU).items()}
    net.train()
    obj._stacked(tensors, inputs, True)
    torch.testing.assert_close(inputs, kept, rtol=0, atol=0)
