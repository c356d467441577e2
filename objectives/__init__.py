"""Objectives: the losses a sweep optimises."""

from ._base import MiniBatchObjective, Objective, TrialState, evaluate, is_minibatch
from ._errors import ObjectiveError
from ._registry import available, build, loads_back, register

__all__ = ["MiniBatchObjective", "Objective", "ObjectiveError", "TrialState", "available",
           "build", "evaluate", "is_minibatch", "loads_back", "register"]
