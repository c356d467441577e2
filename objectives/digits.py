"""Handwritten digits: classifiers on scikit-learn's bundled 8x8 digits (1797 images, no
download), trained in mini-batches.

The images are split (stratified, seeded) into train, validation and test; features are
standardised with the train split's statistics. Each epoch is scored on the validation split
(``val_loss``, ``val_accuracy``); the test split is held out for ``evaluate`` (train and test
accuracy of a trial's final parameters). ``Digits`` is a small MLP; ``DigitsCNN``
(``objectives.digits_cnn``) a small convolutional network on the same splits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._base import TrialState
from ._errors import ObjectiveError
from .dataset import DatasetObjective, accuracy
from .module import check_count, device_of

__all__ = ["LR_RANGES", "DigitSplits", "Digits", "DigitsObjective", "check_dropout",
           "load_splits"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
FEATURES = 64  # 8x8 pixels
CLASSES = 10
MAX_HELD_OUT = 0.9  # test_fraction + val_fraction: leave at least a tenth for training

_Pair = tuple[torch.Tensor, torch.Tensor]

# The lr intervals a sweep of ``Digits`` searches, measured: from about 1.5 decades below each
# optimizer's LR range-test valley to the largest lr at which 40 epochs at a constant lr still
# train (validation accuracy above 90%; momentum 0.9, 0.95 for the SGD family).
LR_RANGES = {"sgd": (1e-2, 1.0), "momentum": (1e-3, 1e-1), "nesterov": (1e-3, 1e-1),
             "adam": (1e-4, 3e-2), "adamw": (1e-4, 3e-2), "rmsprop": (1e-5, 1e-3),
             "adagrad": (1e-3, 3e-1)}


@dataclass(frozen=True)
class DigitSplits:
    """(inputs, targets) of each split: inputs of ``shape`` per image, integer class targets."""

    train: _Pair
    validation: _Pair
    test: _Pair


def load_splits(seed: int = 0, test_fraction: float = 0.25, val_fraction: float = 0.15,
                dtype: torch.dtype = torch.float32,
                shape: tuple[int, ...] = (FEATURES,)) -> DigitSplits:
    """Stratified, seeded train/validation/test splits (fractions of all 1797 images),
    standardised per pixel with the train split's statistics, each image of ``shape``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    features, labels = load_digits(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(
        features, labels, test_size=test_fraction, random_state=seed, stratify=labels)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed,
        stratify=y_rest)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0  # border pixels that are blank in every training image

    def pair(x: Any, y: Any) -> _Pair:
        inputs = torch.tensor((x - mean) / std, dtype=dtype).reshape(len(x), *shape)
        return inputs, torch.tensor(y)

    return DigitSplits(pair(x_train, y_train), pair(x_val, y_val), pair(x_test, y_test))


class DigitsObjective(DatasetObjective):
    """Cross-entropy of ``module`` on the digits' train split in mini-batches, validated on the
    validation split after each epoch; ``evaluate`` scores the train and test splits.

    ``build(dtype)`` makes the module; it runs with torch's global generator seeded with
    ``seed`` (and the global state given back), so the initial weights follow ``seed``.
    ``lr_ranges`` are the learning-rate intervals a sweep searches by default.
    """

    def __init__(self, build: Callable[[torch.dtype], nn.Module], *, name: str,
                 default_epochs: int, batch_size: int, val_fraction: float,
                 test_fraction: float, seed: int, dtype: str,
                 arguments: Mapping[str, Any], shape: tuple[int, ...] = (FEATURES,),
                 lr_ranges: Mapping[str, tuple[float, float]] | None = None) -> None:
        check_count("objective-arg batch_size", batch_size)
        check_count("objective-arg seed", seed, minimum=0)
        if not 0.01 <= test_fraction <= 0.5:
            raise ObjectiveError("objective-arg test_fraction", test_fraction,
                                 "use 0.01 <= x <= 0.5")
        if not 0.01 <= val_fraction <= MAX_HELD_OUT - test_fraction:
            raise ObjectiveError("objective-arg val_fraction", val_fraction,
                                 f"use 0.01 <= x <= {MAX_HELD_OUT - test_fraction:g} (at "
                                 f"most {MAX_HELD_OUT:g} held out with test_fraction)")
        if dtype not in DTYPES:
            raise ObjectiveError("objective-arg dtype", dtype, "use float32 or float64")
        splits = load_splits(seed, test_fraction, val_fraction, DTYPES[dtype], shape)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = build(DTYPES[dtype])
        super().__init__(module, splits.train, batch_size=batch_size,
                         loss_fn=nn.functional.cross_entropy, validation=splits.validation,
                         metrics={"accuracy": accuracy}, seed=seed, name=name,
                         default_epochs=default_epochs, arguments=arguments,
                         lr_ranges=lr_ranges)
        self._splits = splits

    def accuracy(self, params: dict[str, torch.Tensor], split: str = "test",
                 buffers: dict[str, torch.Tensor] | None = None) -> float:
        """Share of ``split`` (train, validation or test) that ``params`` classify correctly, in
        eval mode with the trial's BatchNorm statistics ``buffers`` (none given: those of the
        train split under ``params``)."""
        if split not in ("train", "validation", "test"):
            raise ObjectiveError("split", split, "use train, validation or test")
        return self._accuracies(params, [getattr(self._splits, split)], buffers)[0]

    def evaluate(self, params: dict[str, torch.Tensor],
                 buffers: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Accuracy on the train and the held-out test split (logged with each trial), with
        the trial's own BatchNorm statistics ``buffers`` where given."""
        train, test = self._accuracies(params, [self._splits.train, self._splits.test], buffers)
        return {"train_accuracy": train, "test_accuracy": test}

    def _accuracies(self, params: dict[str, torch.Tensor], pairs: list[_Pair],
                    buffers: dict[str, torch.Tensor] | None) -> list[float]:
        device = device_of(params)
        state = self.start_trial(device)
        scores = []
        with torch.no_grad():
            if buffers is not None:
                state.buffers.update(buffers)
            elif state.buffers:
                self._measure_batchnorm(params, state)
            for pair in pairs:
                inputs, targets = (t.to(device) for t in pair)
                outputs = torch.cat([self._forward(params, state, chunk, training=False)
                                     for chunk in inputs.split(self.batch_size)])
                scores.append((outputs.argmax(dim=1) == targets).sum().item() / len(targets))
        return scores

    def _measure_batchnorm(self, params: dict[str, torch.Tensor], state: TrialState) -> None:
        """Set the BatchNorm statistics in ``state`` (fresh) to the train split's under
        ``params``, in one pass over it (for parameters given without their trial's
        statistics)."""
        inputs = self._splits.train[0].to(device_of(params))
        with _measuring_batchnorm(self._module):
            self._module_call({**state.buffers, **params}, inputs)


@contextmanager
def _measuring_batchnorm(module: nn.Module) -> Iterator[None]:
    """``module`` in eval mode but for its BatchNorm layers, which set their running statistics
    to those of the batches they see, equally weighted (momentum None; fresh buffers start with
    ``num_batches_tracked`` 0); all of it in eval mode afterwards."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    module.eval()
    for norm in norms:
        norm.train()
        norm.momentum = None
    try:
        yield
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        module.eval()


class Digits(DigitsObjective):
    """An MLP on the 64 pixels of each image: linear, ReLU, dropout, linear (softmax regression
    with ``hidden=0``), trained in mini-batches of ``batch_size``."""

    def __init__(self, hidden: int = 64, dropout: float = 0.2, batch_size: int = 64,
                 val_fraction: float = 0.15, test_fraction: float = 0.25, seed: int = 0,
                 dtype: str = "float32") -> None:
        check_count("objective-arg hidden", hidden, minimum=0)
        check_dropout(dropout)
        super().__init__(
            lambda kind: _mlp(hidden, dropout, kind), name="digits", default_epochs=40,
            batch_size=batch_size, val_fraction=val_fraction, test_fraction=test_fraction,
            seed=seed, dtype=dtype, lr_ranges=LR_RANGES,
            arguments={"hidden": hidden, "dropout": dropout, "batch_size": batch_size,
                       "val_fraction": val_fraction, "test_fraction": test_fraction,
                       "seed": seed, "dtype": dtype})


def check_dropout(dropout: float) -> None:
    """``ObjectiveError`` unless ``dropout`` is a probability below 1."""
    if not 0.0 <= dropout < 1.0:
        raise ObjectiveError("objective-arg dropout", dropout, "use 0 <= x < 1")


def _mlp(hidden: int, dropout: float, dtype: torch.dtype) -> nn.Module:
    if not hidden:
        return nn.Sequential(nn.Linear(FEATURES, CLASSES, dtype=dtype))
    return nn.Sequential(nn.Linear(FEATURES, hidden, dtype=dtype), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(hidden, CLASSES, dtype=dtype))
