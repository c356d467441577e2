"""Tiny data-set objectives fed from ``Dataset``s and ``DataLoader``s, for tests; loaded as
``tests.data_objectives:<name>`` by the command-line tests."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from objectives.dataset import DatasetObjective, accuracy
from tests.minibatch_objectives import FEATURES, HELD_OUT, data, model


class Noisy(Dataset):
    """``data(seed, rows)`` as (input, target) items; each input gets fresh Gaussian noise
    of scale ``noise`` (drawn from torch's global generator) every time it is read."""

    def __init__(self, seed: int = 0, rows: int = 37, noise: float = 0.1) -> None:
        self.inputs, self.targets = data(seed, rows)
        self.noise = noise

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self.inputs[i]
        if self.noise:
            inputs = inputs + self.noise * torch.randn(inputs.shape, dtype=inputs.dtype)
        return inputs, self.targets[i]


class Records(Noisy):
    """``Noisy``'s rows as dicts: the first ``FEATURES - 1`` features, the last one apart,
    and the label."""

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:  # type: ignore[override]
        inputs, target = super().__getitem__(i)
        return {"x": inputs[:-1], "extra": inputs[-1:], "label": target}


class TwoInputs(nn.Module):
    """``Records``' two inputs joined, then linear (no bias), BatchNorm, ReLU, dropout,
    linear; float64."""

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.layers = nn.Sequential(
                nn.Linear(FEATURES, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(),
                nn.Dropout(dropout), nn.Linear(8, 3)).double()

    def forward(self, x: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([x, extra], dim=1))


def record_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``step`` hook of ``Records``: cross-entropy of the model on both inputs."""
    return nn.functional.cross_entropy(model(batch["x"], batch["extra"]), batch["label"])


def records(dropout: float = 0.3) -> DatasetObjective:
    """``TwoInputs`` on noisy ``Records`` through a ``step`` hook, validated on more."""
    return DatasetObjective(TwoInputs(dropout), Records(0), batch_size=8, step=record_loss,
                            validation=Records(1, HELD_OUT),
                            name="tests.data_objectives:records")


def wrong_width() -> DatasetObjective:
    """``model`` (4 features) trained from a loader of rows with 5: it cannot take them."""
    inputs, targets = data(0)
    rows = list(zip(torch.cat([inputs, inputs[:, :1]], dim=1), targets))
    return DatasetObjective(model(), DataLoader(rows, batch_size=8),  # type: ignore[arg-type]
                            loss_fn=nn.functional.cross_entropy,
                            name="tests.data_objectives:wrong_width")


def per_row_step() -> DatasetObjective:
    """A ``step`` hook that returns the batch's per-row losses, not their mean."""
    return DatasetObjective(
        model(), Noisy(0), batch_size=8, name="tests.data_objectives:per_row_step",
        step=lambda net, batch: nn.functional.cross_entropy(net(batch[0]), batch[1],
                                                            reduction="none"))


def nan_test() -> DatasetObjective:
    """Test data with a NaN in one input: its test loss is NaN."""
    tested = Noisy(2, HELD_OUT)
    tested.inputs[0, 0] = float("nan")
    return DatasetObjective(
        model(), Noisy(0), batch_size=8, loss_fn=nn.functional.cross_entropy,
        validation=Noisy(1, HELD_OUT), test=tested, metrics={"accuracy": accuracy},
        name="tests.data_objectives:nan_test")
