"""Handwritten digits: a small classifier on scikit-learn's bundled 8x8 digits (no download).

Features are standardised with the train split's statistics; the loss is full-batch
cross-entropy on the train split, and ``accuracy`` scores either split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import skip_init

from ._errors import ObjectiveError
from .module import ModuleObjective

__all__ = ["Digits"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_FEATURES = 64  # 8x8 pixels
_CLASSES = 10


@dataclass
class Digits:
    """Full-batch cross-entropy of a small seeded classifier on the digits' train split."""

    hidden: int = 32  # hidden units of the one hidden layer; 0 means softmax regression
    seed: int = 0  # seed of the train/test split and of the initial weights
    test_fraction: float = 0.25  # share of the 1797 images held out for ``accuracy``
    dtype: str = "float64"  # float64 or float32
    name: str = field(default="digits", init=False)
    default_epochs: int = field(default=500, init=False)

    def __post_init__(self) -> None:
        if self.hidden < 0:
            raise ObjectiveError("objective-arg hidden", self.hidden, "use an integer >= 0")
        if self.seed < 0:
            raise ObjectiveError("objective-arg seed", self.seed, "use an integer >= 0")
        if not 0.01 <= self.test_fraction <= 0.99:
            raise ObjectiveError(
                "objective-arg test_fraction", self.test_fraction, "use 0.01 <= x <= 0.99"
            )
        if self.dtype not in _DTYPES:
            raise ObjectiveError("objective-arg dtype", self.dtype, "use float64 or float32")
        dtype = _DTYPES[self.dtype]
        self._splits = _load_splits(self.seed, self.test_fraction, dtype)
        inputs, targets = self._splits["train"]
        self._objective = ModuleObjective(
            _classifier(self.hidden, self.seed, dtype),
            inputs,
            targets,
            loss_fn=nn.functional.cross_entropy,
            name=self.name,
            default_epochs=self.default_epochs,
        )

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        return self._objective.init_params(device)

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._objective.loss(params)

    def accuracy(self, params: dict[str, torch.Tensor], split: str = "test") -> float:
        """Share of ``split`` ("train" or "test") that ``params`` classify correctly."""
        if split not in self._splits:
            raise ObjectiveError("split", split, "use train or test")
        inputs, targets = self._splits[split]
        with torch.no_grad():
            predicted = self._objective.forward(params, inputs).argmax(dim=1).cpu()
        return (predicted == targets).double().mean().item()

    def evaluate(self, params: dict[str, torch.Tensor]) -> dict[str, float]:
        """Accuracy on the training and the held-out split (logged with each trial)."""
        return {"train_accuracy": self.accuracy(params, "train"),
                "test_accuracy": self.accuracy(params, "test")}

    def arguments(self) -> dict[str, Any]:
        return {
            "hidden": self.hidden,
            "seed": self.seed,
            "test_fraction": self.test_fraction,
            "dtype": self.dtype,
        }


def _load_splits(
    seed: int, test_fraction: float, dtype: torch.dtype
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Stratified, seeded train/test split, standardised with the train statistics."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    features, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0  # border pixels that are blank in every training image
    return {
        "train": (torch.tensor((x_train - mean) / std, dtype=dtype), torch.tensor(y_train)),
        "test": (torch.tensor((x_test - mean) / std, dtype=dtype), torch.tensor(y_test)),
    }


class _Classifier(nn.Module):
    """``layer1``, then ReLU and ``layer2`` when there are hidden units."""

    def __init__(self, hidden: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.layer1 = skip_init(nn.Linear, _FEATURES, hidden or _CLASSES, dtype=dtype)
        self.layer2 = skip_init(nn.Linear, hidden, _CLASSES, dtype=dtype) if hidden else None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = self.layer1(inputs)
        return outputs if self.layer2 is None else self.layer2(torch.relu(outputs))


def _classifier(hidden: int, seed: int, dtype: torch.dtype) -> nn.Module:
    """A classifier initialised like ``nn.Linear`` but from its own seeded generator."""
    model = _Classifier(hidden, dtype)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (model.layer1, model.layer2):
            if layer is not None:
                bound = layer.in_features**-0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    return model
