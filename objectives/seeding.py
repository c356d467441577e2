"""Seeded draws for data loading: the random numbers a ``Dataset``'s transforms draw are a
function of the objective's seed and the epoch, not of what ran before.

``SeededDraws`` keeps its own states of the three global generators a transform may draw from
(torch's on the CPU, numpy's legacy one, Python's ``random``) and swaps them in around each
call it makes (``call``), giving the callers' states back afterwards: draws made for data go
on from where that stream stopped, whatever the training steps between them drew.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["SeededDraws", "draw_seed"]

T = TypeVar("T")


def draw_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed for ``epoch`` of ``stream`` (0: training, 1: validation, 2: test),
    independent between epochs and streams; training's is the batch order's seed of the
    in-memory tensors."""
    sequence = (np.random.SeedSequence([seed, epoch]) if not stream
                else np.random.SeedSequence([seed, epoch], spawn_key=(stream,)))
    return int(sequence.generate_state(1, np.uint64)[0] >> 1)


class SeededDraws:
    """The global generators' own states for one stream of draws, started from ``seed``."""

    def __init__(self, seed: int) -> None:
        self._torch = torch.Generator().manual_seed(seed).get_state()
        self._numpy = np.random.RandomState(seed % 2**32).get_state()
        self._python = random.Random(seed).getstate()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` drawing from this stream; the global generators as they were after."""
        default = torch.random.default_generator
        saved = default.get_state(), np.random.get_state(), random.getstate()
        default.set_state(self._torch)
        np.random.set_state(self._numpy)
        random.setstate(self._python)
        try:
            return fn(*args)
        finally:
            self._torch = default.get_state()
            self._numpy = np.random.get_state()
            self._python = random.getstate()
            default.set_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])
