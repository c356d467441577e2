"""The verdict on a run: the first of the rules (``RULES``) that applies, else healthy, with
what the per-tensor statistics say added (layer faults, stalled tensors)."""

from __future__ import annotations

from sweeps.training.stats import EpochStats
from sweeps.training.verdicts.rules import RULES, healthy
from sweeps.training.verdicts.tensors import layer_faults, stalled_tensors, with_faults
from sweeps.training.verdicts.thresholds import Thresholds
from sweeps.training.verdicts.verdict import Verdict

__all__ = ["judge"]


def judge(
    stats: EpochStats, *, failed: str | None = None, thresholds: Thresholds = Thresholds()
) -> Verdict:
    """The verdict on a run from its per-epoch statistics.

    ``failed`` is the failure reason of a run that ended with a non-finite loss or gradient
    (``TrainResult.failure``); such a run is diverged whatever its statistics.
    """
    if failed is None and len(stats) == 0:
        raise ValueError("no epochs to judge: the statistics are empty and the run did not fail.")
    for rule in RULES:
        verdict = rule(stats, failed, thresholds)
        if verdict is not None:
            break
    else:
        verdict = healthy(stats, thresholds)
    faults = layer_faults(stats, thresholds)
    if verdict.name == "diverged":  # a smaller lr comes first; of the layers, only an explosion
        return with_faults(verdict, [f for f in faults if f.kind == "exploding"])
    return with_faults(stalled_tensors(verdict, stats, thresholds), faults)
