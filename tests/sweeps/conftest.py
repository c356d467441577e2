"""Objectives shared by the loop and matrix tests (built once per module)."""

from __future__ import annotations

import pytest

from objectives.module import ModuleObjective
from objectives.rebalance import Rebalance

try:
    from toy_objectives import full_batch_digits
except ImportError:  # pragma: no cover
    from tests.toy_objectives import full_batch_digits


@pytest.fixture(scope="module")
def rebalance() -> Rebalance:
    return Rebalance()


@pytest.fixture(scope="module")
def digits_mlp() -> ModuleObjective:
    """A real multi-tensor network trained full batch (the digits' train split)."""
    return full_batch_digits(hidden=8)
