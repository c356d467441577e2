"""A user objective in a few lines: a small MLP fitting a noisy sine curve.

Any module attribute that follows the objective protocol can be swept by its import path::

    python -m sweeps.run --objective examples.my_objective:objective
"""

from __future__ import annotations

import math

import torch
from torch import nn

from objectives.module import ModuleObjective

__all__ = ["objective"]

_generator = torch.Generator().manual_seed(0)
inputs = torch.linspace(-math.pi, math.pi, 128).unsqueeze(1)
targets = torch.sin(inputs) + 0.1 * torch.randn(inputs.shape, generator=_generator)

with torch.random.fork_rng():  # seed the layers' default init without touching global state
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))

objective = ModuleObjective(
    model,
    inputs,
    targets,
    loss_fn=nn.functional.mse_loss,
    name=f"{__name__}:objective",  # the import path the sweep was given
    default_epochs=500,
)
