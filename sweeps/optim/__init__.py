"""Optimizers and learning-rate schedulers by name, over ``torch.optim``, with one typed entry
per sub-parameter (default and search range). Importing this package does not import torch."""

from sweeps.optim.optimizers import (
    OPTIMIZERS,
    OptimizerSpec,
    build_grouped,
    build_optimizer,
    group_options,
)
from sweeps.optim.schedulers import SCHEDULERS, SchedulerSpec, build_scheduler
from sweeps.optim.subparams import Decay, Length, SubParam

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "Decay",
    "Length",
    "OptimizerSpec",
    "SchedulerSpec",
    "SubParam",
    "build_grouped",
    "build_optimizer",
    "build_scheduler",
    "group_options",
]
