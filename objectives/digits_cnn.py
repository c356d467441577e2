"""A small convolutional network on the 8x8 digits, with BatchNorm and dropout (the splits,
the validation and the test accuracy of ``objectives.digits``)."""

from __future__ import annotations

import torch
from torch import nn

from .digits import CLASSES, DigitsObjective, check_dropout
from .module import check_count

__all__ = ["LR_RANGES", "DigitsCNN"]

_SIDE = 8  # pixels per side of an image
# The lr intervals a sweep searches, measured as ``objectives.digits.LR_RANGES`` are, over
# this network's 20 epochs (momentum up to 0.99 for rmsprop, 0.95 for the SGD family).
LR_RANGES = {"sgd": (1e-3, 1.0), "momentum": (1e-3, 1e-1), "nesterov": (1e-3, 1e-1),
             "adam": (1e-4, 1e-1), "adamw": (1e-4, 1e-1), "rmsprop": (1e-5, 3e-3),
             "adagrad": (1e-3, 1.0)}


class DigitsCNN(DigitsObjective):
    """conv-BN-ReLU, conv-BN-ReLU, 2x2 max-pool, dropout, linear, on 1x8x8 images in
    mini-batches of ``batch_size``. Each trial has its own BatchNorm statistics and dropout
    stream; ``evaluate`` scores with the train split's BatchNorm statistics."""

    def __init__(self, channels: int = 16, dropout: float = 0.25, batch_size: int = 64,
                 val_fraction: float = 0.15, test_fraction: float = 0.25, seed: int = 0,
                 dtype: str = "float32") -> None:
        check_count("objective-arg channels", channels)
        check_dropout(dropout)
        super().__init__(
            lambda kind: _cnn(channels, dropout, kind), name="digits-cnn", default_epochs=20,
            batch_size=batch_size, val_fraction=val_fraction, test_fraction=test_fraction,
            seed=seed, dtype=dtype, shape=(1, _SIDE, _SIDE), lr_ranges=LR_RANGES,
            arguments={"channels": channels, "dropout": dropout, "batch_size": batch_size,
                       "val_fraction": val_fraction, "test_fraction": test_fraction,
                       "seed": seed, "dtype": dtype})


def _cnn(channels: int, dropout: float, dtype: torch.dtype) -> nn.Module:
    wide = 2 * channels
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1, dtype=dtype), nn.BatchNorm2d(channels, dtype=dtype),
        nn.ReLU(),
        nn.Conv2d(channels, wide, 3, padding=1, dtype=dtype), nn.BatchNorm2d(wide, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(dropout), nn.Flatten(),
        nn.Linear(wide * (_SIDE // 2) ** 2, CLASSES, dtype=dtype),
    )
