"""A user objective from a ``torch.utils.data.Dataset`` and an ``nn.Module``: a small network
that tells noisy concentric rings apart, trained in mini-batches and scored on a validation set
after every epoch (``val_loss``, ``val_accuracy``)::

    python -m sweeps.run --objective examples.dataset_objective:objective \\
        --metric val_accuracy --direction maximize
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import Dataset

from objectives.dataset import DatasetObjective, accuracy

__all__ = ["Classifier", "Rings", "objective"]


class Rings(Dataset):
    """``size`` noisy 2-D points on ``classes`` concentric rings (radii 1, 2, ...); the target
    of a point is its ring."""

    def __init__(self, size: int, seed: int, classes: int = 3, noise: float = 0.3) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.targets = torch.randint(classes, (size,), generator=generator)
        angle = 2 * math.pi * torch.rand(size, generator=generator)
        radius = 1.0 + self.targets + noise * torch.randn(size, generator=generator)
        self.points = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.points[index], self.targets[index]


class Classifier(nn.Module):
    """Linear, BatchNorm, ReLU, dropout, linear: class scores of 2-D points."""

    def __init__(self, hidden: int = 32, classes: int = 3) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(2, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                    nn.Dropout(0.1), nn.Linear(hidden, classes))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.layers(points)


with torch.random.fork_rng(devices=[]):  # seed the layers' init without touching global state
    torch.manual_seed(0)
    model = Classifier()

objective = DatasetObjective(
    model,
    Rings(600, seed=0),  # read through a DataLoader of batch_size each epoch
    batch_size=50,  # 12 steps an epoch
    loss_fn=nn.functional.cross_entropy,
    validation=Rings(200, seed=1),  # scored in eval mode after every epoch
    metrics={"accuracy": accuracy},  # logged as val_accuracy
    name=f"{__name__}:objective",  # the import path the sweep was given
    default_epochs=20,
)
