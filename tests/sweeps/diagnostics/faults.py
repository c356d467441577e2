"""A catalogue of training faults, each built in as a user's bug would be, on small models and
data: loaded as ``tests.sweeps.diagnostics.faults:<name>`` (e.g. by ``sweeps.diagnose``).

The data are Gaussian blobs: ``CLASSES`` classes of ``FEATURES`` features, a training and a
validation split drawn from the same centres, float32, in mini-batches (``exploding`` is
full-batch). The base model is an MLP (``0.weight``, ``0.bias``, ``2.weight``, ``2.bias``);
each fault changes one thing a user might get wrong: the input scale, the initial bias, the
labels, the amount of data, the depth, activation and initial scale, a layer cut out of the
graph. Each builder's docstring says what goes wrong; ``test_fault_catalogue`` says what the
verdict must be.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from objectives.dataset import DatasetObjective, accuracy
from objectives.module import ModuleObjective

NAME = "tests.sweeps.diagnostics.faults"
FEATURES, CLASSES, HIDDEN = 8, 4, 32
TRAIN, HELD_OUT, BATCH = 256, 128, 32
EPOCHS = 12

_Pair = tuple[torch.Tensor, torch.Tensor]


def blobs(rows: int, split: int, spread: float = 1.5, seed: int = 0) -> _Pair:
    """``rows`` points around ``CLASSES`` centres (the same for every split of ``seed``; the
    points differ by ``split``), unit noise, balanced classes."""
    centres = torch.randn(CLASSES, FEATURES, generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(1000 * seed + split + 1)
    targets = torch.arange(rows) % CLASSES
    inputs = spread * centres[targets] + torch.randn(rows, FEATURES, generator=generator)
    return inputs, targets


def _module(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def mlp(hidden: int = HIDDEN) -> nn.Sequential:
    """Linear, ReLU, linear: ``0.weight``, ``0.bias``, ``2.weight``, ``2.bias``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, CLASSES))


def _objective(module: nn.Module, name: str, train: _Pair | None = None,
               validation: _Pair | None = None, epochs: int = EPOCHS,
               batch_size: int = BATCH) -> DatasetObjective:
    return DatasetObjective(module, train or blobs(TRAIN, 0), batch_size=batch_size,
                            loss_fn=nn.functional.cross_entropy,
                            validation=validation or blobs(HELD_OUT, 1),
                            metrics={"accuracy": accuracy}, name=f"{NAME}:{name}",
                            default_epochs=epochs)


def healthy() -> DatasetObjective:
    """Nothing wrong: the MLP on standardised blobs."""
    return _objective(mlp(), "healthy")


def input_scale(scale: float = 1e-6) -> DatasetObjective:
    """Inputs multiplied by ``scale`` (a unit mix-up in the preprocessing, both splits): the
    first layer's weight sees almost nothing, its gradient is ``scale`` of the others'."""
    (x, y), (vx, vy) = blobs(TRAIN, 0), blobs(HELD_OUT, 1)
    return _objective(mlp(), "input_scale", (scale * x, y), (scale * vx, vy))


def dead_relu(bias: float = -20.0) -> DatasetObjective:
    """The first layer's bias initialised to ``bias``: every ReLU is off for every input, so
    nothing below the output layer's bias gets a gradient."""
    module = mlp()
    first = module[0]
    assert isinstance(first, nn.Linear)
    with torch.no_grad():
        first.bias.fill_(bias)
    return _objective(module, "dead_relu")


def shuffled_labels(rows: int = 64, hidden: int = 256, epochs: int = 40) -> DatasetObjective:
    """The training labels permuted (a data bug: labels out of step with their inputs); the
    validation labels are right. A wide MLP memorises the ``rows`` training points."""
    inputs, targets = blobs(rows, 0)
    shuffled = targets[torch.randperm(rows, generator=torch.Generator().manual_seed(7))]
    return _objective(mlp(hidden), "shuffled_labels", (inputs, shuffled), epochs=epochs,
                      batch_size=16)


def overfit(rows: int = 24, hidden: int = 256, epochs: int = 60) -> DatasetObjective:
    """Few training rows of heavily overlapping classes and a wide MLP: the training loss
    falls to nothing while the validation loss, after a first fall, grows."""
    inputs, targets = blobs(rows, 0, spread=0.6)
    return _objective(mlp(hidden), "overfit", (inputs, targets),
                      blobs(HELD_OUT, 1, spread=0.6), epochs=epochs, batch_size=8)


class Detached(nn.Module):
    """Linear, ReLU, linear, with the first layer's output detached (``.detach()`` left in
    from debugging): ``first`` never gets a gradient, ``last`` trains on random features."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.first = nn.Linear(FEATURES, hidden)
        self.last = nn.Linear(hidden, CLASSES)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.last(torch.relu(self.first(inputs).detach()))


def frozen_layer() -> DatasetObjective:
    """``Detached``: a frozen first layer under a layer that learns."""
    return _objective(_module(Detached), "frozen_layer")


def deep(depth: int, activation: Callable[[], nn.Module], hidden: int = 16,
         gain: float | None = None) -> nn.Module:
    """``depth`` hidden linear layers of width ``hidden`` with ``activation``, then a linear
    output; with ``gain``, weights drawn from N(0, gain^2 / fan_in) and zero biases."""
    def build() -> nn.Module:
        layers: list[nn.Module] = []
        width = FEATURES
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), activation()]
            width = hidden
        layers.append(nn.Linear(width, CLASSES))
        net = nn.Sequential(*layers)
        if gain is not None:
            for layer in net:
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, std=gain / layer.in_features ** 0.5)
                    nn.init.zeros_(layer.bias)
        return net
    return _module(build)


def vanishing(depth: int = 11) -> DatasetObjective:
    """A deep plain sigmoid net: each layer scales the gradient by at most a quarter."""
    return _objective(deep(depth, nn.Sigmoid), "vanishing")


def exploding(depth: int = 10, gain: float = 3.0) -> ModuleObjective:
    """A deep plain ReLU net initialised ``gain`` times too large (activations and gradients
    grow layer by layer), on the whole training split at once: one step an epoch, so the
    statistics keep the epochs before the loss overflows (in mini-batches it overflows within
    the first epoch)."""
    inputs, targets = blobs(TRAIN, 0)
    return ModuleObjective(deep(depth, nn.ReLU, gain=gain), inputs, targets,
                           loss_fn=nn.functional.cross_entropy, name=f"{NAME}:exploding",
                           default_epochs=30)
