"""Rows leave a stack as their trials end: the stacked tensors shrink at once, and the rows
still training go on exactly as their sequential runs (float64, dropout and BatchNorm)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from objectives import TrialState
from objectives.dataset import DatasetObjective
from sweeps.batched import train_batch
from sweeps.optim import OPTIMIZERS
from sweeps.training.loop import Observer, train
from sweeps.training.stats import EpochStats
from tests.sweeps.batched.test_batched_minibatch import assert_same, configs, stacked_net

SCHEDULES = ["none", "cosine", "step", "onecycle", "plateau", "exponential", "cosine"]


@dataclass
class PruneAt(Observer):
    """Prunes its trial once ``epoch`` epochs have run."""

    epoch: int

    def on_chunk(self, stats: EpochStats) -> bool:
        return stats.start + len(stats) >= self.epoch


@dataclass
class RowCounter:
    """Wraps an objective's ``batch_losses`` to count the rows of every batched step."""

    objective: DatasetObjective
    rows: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        inner = self.objective.batch_losses

        def counted(params: dict[str, torch.Tensor], state: TrialState,
                    batch: torch.Tensor) -> torch.Tensor:
            self.rows.append(len(next(iter(params.values()))))
            return inner(params, state, batch)

        self.objective.batch_losses = counted  # type: ignore[method-assign]


def test_rows_that_end_leave_the_stack_and_the_others_follow_their_sequential_runs() -> None:
    objective = stacked_net(dropout=0.3, batch_size=8)
    steps = objective.steps_per_epoch
    hps = [configs(o, s)[i % 3] for i, (o, s) in enumerate(zip(OPTIMIZERS, SCHEDULES))]
    prune_at = {1: 2, 3: 2, 4: 4, 6: 4}  # row -> epochs it runs (the middle of two rules)
    observers = [(PruneAt(prune_at[i]),) if i in prune_at else () for i in range(len(hps))]
    counter = RowCounter(objective)
    batched = train_batch(objective, hps, 6, chunk=1, observers=observers)

    # the probe's step, then 7 rows for 2 epochs, 5 for 2 more, 3 for the last 2
    assert counter.rows[1:] == [7] * 2 * steps + [5] * 2 * steps + [3] * 2 * steps
    for i, (hp, result) in enumerate(zip(hps, batched, strict=True)):
        alone = train(objective, hp, 6, chunk=1,
                      observers=(PruneAt(prune_at[i]),) if i in prune_at else ())
        assert result.status == ("pruned" if i in prune_at else "complete")
        assert_same(result, alone)
