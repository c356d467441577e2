"""Tiny mini-batch objectives for tests, loaded as ``tests.minibatch_objectives:<name>``."""

from __future__ import annotations

import torch
from torch import nn

from objectives.dataset import DatasetObjective, accuracy

ROWS, HELD_OUT, FEATURES, CLASSES = 37, 20, 4, 3


def data(seed: int = 0, rows: int = ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` float64 points; the class is the largest of three fixed linear scores."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(rows, FEATURES, generator=generator, dtype=torch.float64)
    scores = inputs @ torch.randn(FEATURES, CLASSES, generator=generator, dtype=torch.float64)
    return inputs, scores.argmax(dim=1)


def model(dropout: float = 0.3, seed: int = 0) -> nn.Module:
    """Linear, BatchNorm, ReLU, dropout, linear; float64, initialised from ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(FEATURES, 8), nn.BatchNorm1d(8), nn.ReLU(),
                             nn.Dropout(dropout), nn.Linear(8, CLASSES)).double()


def tiny(batch_size: int = 8, drop_last: bool = False, shuffle: bool = True,
         dropout: float = 0.3, seed: int = 0) -> DatasetObjective:
    """Cross-entropy of ``model`` on 37 training rows, scored on 20 held-out rows."""
    return DatasetObjective(
        model(dropout), data(0), batch_size=batch_size, loss_fn=nn.functional.cross_entropy,
        validation=data(1, HELD_OUT), metrics={"accuracy": accuracy}, shuffle=shuffle,
        drop_last=drop_last, seed=seed, name="tests.minibatch_objectives:tiny",
        default_epochs=6,
        arguments={"batch_size": batch_size, "drop_last": drop_last, "shuffle": shuffle,
                   "dropout": dropout, "seed": seed})


def line() -> DatasetObjective:
    """A linear regression on ``data``'s inputs (their sum), float64, batches of 8: a large
    enough lr makes it diverge within a few epochs."""
    inputs, _ = data(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layer = nn.Linear(FEATURES, 1).double()
    return DatasetObjective(layer, (inputs, inputs.sum(dim=1, keepdim=True)), batch_size=8,
                            loss_fn=nn.functional.mse_loss)


def misshapen(part: str = "inputs") -> DatasetObjective:
    """``tiny`` with validation data that does not fit: a feature too many (``part=inputs``)
    or a target too few (``part=targets``); its construction fails."""
    inputs, targets = data(1, HELD_OUT)
    if part == "inputs":
        inputs = torch.cat([inputs, inputs[:, :1]], dim=1)
    else:
        targets = targets[1:]
    return DatasetObjective(model(), data(0), batch_size=8, loss_fn=nn.functional.cross_entropy,
                            validation=(inputs, targets))


def held_out_test(batch_size: int = 8, dropout: float = 0.3) -> DatasetObjective:
    """``tiny`` with a test split of 20 more rows."""
    return DatasetObjective(
        model(dropout), data(0), batch_size=batch_size, loss_fn=nn.functional.cross_entropy,
        validation=data(1, HELD_OUT), test=data(2, HELD_OUT), metrics={"accuracy": accuracy},
        name="tests.minibatch_objectives:held_out_test", default_epochs=6,
        arguments={"batch_size": batch_size, "dropout": dropout})
