"""What a verdict is: one of ``VERDICTS``, with a reason a person understands and the parameter
tensors it names; ``NOT_THE_LR`` are the verdicts whose cause is not the learning rate."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NOT_THE_LR", "VERDICTS", "Verdict"]

VERDICTS = ("stalled", "slow", "flat", "healthy", "overfitting", "memorizing", "unstable",
            "diverged")


NOT_THE_LR = ("flat", "memorizing", "overfitting")  # no learning rate is the cure for these


@dataclass(frozen=True)
class Verdict:
    name: str  # one of VERDICTS
    reason: str  # one line a person understands
    tensors: tuple[str, ...] = ()  # parameter tensors the reason names: stalled or faulty
