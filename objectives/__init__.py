"""Objectives: the losses a sweep optimises."""

from ._base import Objective, evaluate
from ._errors import ObjectiveError
from ._registry import available, build, register

__all__ = ["Objective", "ObjectiveError", "available", "build", "evaluate", "register"]
