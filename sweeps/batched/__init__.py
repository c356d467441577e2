"""Batched trials: several trials of one objective as one tensor program. Importing this
package does not import torch."""

from sweeps.batched.lr_tables import TABULATED, LossSchedule, lr_table, lr_tables
from sweeps.batched.rules import RULES, StackedRule
from sweeps.batched.trials import batchable, train_batch

__all__ = [
    "RULES",
    "TABULATED",
    "LossSchedule",
    "StackedRule",
    "batchable",
    "lr_table",
    "lr_tables",
    "train_batch",
]
