"""Objectives shared by the loop and matrix tests (built once per module)."""

from __future__ import annotations

import pytest

from objectives.digits import Digits
from objectives.rebalance import Rebalance


@pytest.fixture(scope="module")
def rebalance() -> Rebalance:
    return Rebalance()


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits(hidden=8)
