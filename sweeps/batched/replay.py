"""Re-run a trial the way a sweep ran it: as its row of the same stack.

A row of a stack follows its trial's sequential run exactly in float64, but in float32 the
stacked arithmetic rounds differently from one trial's, and training (a high learning rate
above all) amplifies the difference, so a float32 trial re-run alone can end far from the
value the study recorded. The sweep therefore records each trial's stack (``StackRecord``):
the configuration of every row in order, the epochs after which each row left it (pruned),
and torch's thread count. ``replay`` builds the same stack, lets the other rows leave after
the same epochs (``LeaveAfter``), and hands the trial's own row its observers: every kernel
sees the same shapes in the same order, so on the same device, library versions and thread
count the trial is the run the study scored, to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeps.batched.stack import run_together
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import Observer
from sweeps.training.threads import threads_for

if TYPE_CHECKING:
    import torch

    from objectives import Objective
    from sweeps.training.loop import TrainResult
    from sweeps.training.stats import EpochStats

__all__ = ["LeaveAfter", "StackRecord", "replay"]


@dataclass(frozen=True)
class StackRecord:
    """How a trial ran: the rows of its stack (configuration, and the epochs after which the
    row left it; None: it ran until it ended by itself), which of them is the trial, and
    torch's intra-op threads."""

    rows: tuple[tuple[Hyperparams, int | None], ...]
    row: int
    threads: int

    def to_dict(self) -> dict[str, Any]:
        """The export's form (JSON)."""
        return {"row": self.row, "threads": self.threads,
                "rows": [{"params": hp.to_dict(), "leave_after": leave}
                         for hp, leave in self.rows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackRecord:
        """From ``to_dict``'s form; KeyError, TypeError or ValueError where it is not."""
        rows = tuple((Hyperparams.from_dict(r["params"]),
                      None if r["leave_after"] is None else int(r["leave_after"]))
                     for r in data["rows"])
        row = int(data["row"])
        if not 0 <= row < len(rows):
            raise ValueError(f"row {row} of a stack of {len(rows)}")
        return cls(rows, row, int(data["threads"]))


class LeaveAfter(Observer):
    """Stops its row once it has run ``epochs`` epochs, as the sweep's pruner did."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_chunk(self, stats: EpochStats) -> bool:
        return stats.start + len(stats) >= self.epochs


def replay(objective: Objective, record: StackRecord, epochs: int, *,
           device: str | torch.device = "cpu", observers: tuple[Observer, ...] = (),
           per_tensor: bool = True, log_steps: bool = False) -> TrainResult | None:
    """Row ``record.row`` of ``record``'s stack, trained again with ``observers``; None where
    the objective cannot stack its trials here (then the caller trains the trial alone)."""
    from sweeps.batched.trials import batched_stack

    hps = [hp for hp, _ in record.rows]
    row_observers = [observers if i == record.row else
                     (() if leave is None else (LeaveAfter(leave),))
                     for i, (_, leave) in enumerate(record.rows)]
    with threads_for(record.threads):
        stack = batched_stack(objective, hps, epochs, device, per_tensor, row_observers,
                              log_steps=log_steps)
        if stack is None:
            return None
        return run_together([stack])[0][record.row]
