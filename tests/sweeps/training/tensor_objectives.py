"""Small objectives of a few parameter tensors for the per-tensor statistics' tests, loaded as
``tests.sweeps.training.tensor_objectives:<name>``."""

from __future__ import annotations

import torch
from torch import nn

from objectives.dataset import DatasetObjective
from objectives.module import ModuleObjective

NAME = "tests.sweeps.training.tensor_objectives"
ROWS, FEATURES, HIDDEN, CLASSES = 30, 4, 6, 3
TENSORS = ("0.weight", "0.bias", "2.weight")  # the parameter names of ``model``


def data(seed: int = 0, rows: int = ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` float64 points; the class is the largest of three fixed linear scores."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(rows, FEATURES, generator=generator, dtype=torch.float64)
    scores = inputs @ torch.randn(FEATURES, CLASSES, generator=generator, dtype=torch.float64)
    return inputs, scores.argmax(dim=1)


def model(seed: int = 0) -> nn.Module:
    """Linear, tanh, linear without bias: three tensors (``TENSORS``), float64."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.Tanh(),
                             nn.Linear(HIDDEN, CLASSES, bias=False)).double()


class FullBatch(ModuleObjective):
    """Full-batch cross-entropy of ``model`` on 30 rows. A class, so that a sweep's plots can
    rebuild it from the study's settings (``build(..., from_file=True)``)."""

    def __init__(self, seed: int = 0) -> None:
        inputs, targets = data(seed)
        super().__init__(model(seed), inputs, targets, loss_fn=nn.functional.cross_entropy,
                         name=f"{NAME}:FullBatch", default_epochs=20, arguments={"seed": seed})


def full_batch(seed: int = 0) -> ModuleObjective:
    """A ``FullBatch``."""
    return FullBatch(seed)


def minibatch(batch_size: int = 8, seed: int = 0) -> DatasetObjective:
    """``full_batch`` in mini-batches of ``batch_size`` (the last one smaller)."""
    return DatasetObjective(model(seed), data(seed), batch_size=batch_size,
                            loss_fn=nn.functional.cross_entropy, name=f"{NAME}:minibatch",
                            seed=seed, default_epochs=5,
                            arguments={"batch_size": batch_size, "seed": seed})


class GradScaled(nn.Module):
    """Linear, tanh, linear; the first weight's gradient is ``scale`` times its true value.

    The forward pass is that of the plain model (``w.detach() + scale * (w - w.detach())``
    equals ``w``), so the rest of the network trains normally while the first weight, as in
    a network whose first layer sees inputs scaled to nearly nothing, barely moves.
    """

    def __init__(self, scale: float, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.first = nn.Linear(FEATURES, HIDDEN).double()
            self.last = nn.Linear(HIDDEN, CLASSES).double()
        self.scale = scale

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        weight = self.first.weight
        scaled = weight.detach() + self.scale * (weight - weight.detach())
        hidden = torch.tanh(nn.functional.linear(inputs, scaled, self.first.bias))
        return self.last(hidden)


def grad_scaled(scale: float = 1e-12, seed: int = 0) -> ModuleObjective:
    """Full-batch cross-entropy of ``GradScaled``: ``first.weight`` stalls, the rest moves."""
    inputs, targets = data(seed)
    return ModuleObjective(GradScaled(scale, seed), inputs, targets,
                           loss_fn=nn.functional.cross_entropy, name=f"{NAME}:grad_scaled",
                           default_epochs=50, arguments={"scale": scale, "seed": seed})
