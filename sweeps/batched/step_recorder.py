"""Per-epoch means of per-step statistics of batched mini-batch trials, one column per trial.

The batched counterpart of ``sweeps.training.recorder.StepRecorder``: the same statistics,
computed the same way (an ``abs`` into a scratch buffer and a ``sum`` written straight into the
step's numerators and denominators, the parameters before the step kept in that buffer and the
update subtracted from them in place), over stacked parameters whose first dimension is the
trial. Each sum is taken per row, so one step of K trials costs the reductions of one step of
one trial over K times the elements, and no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sweeps.training.recorder import tensor_extra
from sweeps.training.stats import EpochStats

__all__ = ["StackedStepRecorder"]


class StackedStepRecorder:
    """Statistics of up to ``capacity`` epochs of the trials stacked in ``params`` (one row per
    trial); ``tensors`` names each parameter for its per-tensor statistics (empty: none)."""

    def __init__(self, params: list[torch.Tensor], capacity: int,
                 tensors: Sequence[str] = ()) -> None:
        self._params = [p.detach() for p in params]
        self._tensors = tuple(tensors)
        like, count = self._params[0], len(self._params)
        rows = like.shape[0]
        self._scratch = [torch.empty_like(p) for p in self._params]
        self._flat = [s.view(rows, -1) for s in self._scratch]
        sizes = [s.shape[1] for s in self._flat]
        numel = sum(sizes)
        # as in StepRecorder, one row of numerators and denominators per quantity, here with
        # one column per trial: loss, sum|g| / numel, sum|dtheta| / numel,
        # sum|dtheta| / sum|theta|, then per tensor sum|g| / numel and sum|dtheta| / sum|theta|
        self._num = torch.zeros((4 + 2 * count, rows), dtype=like.dtype, device=like.device)
        self._den = torch.ones_like(self._num)
        self._den[1:3] = numel
        self._den[4 : 4 + count] = torch.tensor(sizes, dtype=like.dtype).view(-1, 1)
        self._width = 4 + 2 * len(self._tensors)
        wide = torch.float32 if like.device.type == "mps" else torch.float64
        self._sums = torch.zeros((capacity, self._width, rows), dtype=wide, device=like.device)
        self._extra: dict[str, torch.Tensor] = {}  # one (capacity, rows) table per metric
        self._steps = np.zeros(capacity, dtype=np.int64)
        self._lr = np.empty((capacity, rows))
        self._lrs: list[np.ndarray] = []  # the learning rates of the epoch in progress
        self._first: torch.Tensor | None = None  # each row's first loss
        self._count = count
        self.capacity = capacity
        self.start = 0
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size == self.capacity

    def before_step(self, losses: torch.Tensor, grads: list[torch.Tensor]) -> None:
        """Call after ``backward`` and before the update; ``losses``: one per row."""
        count, num, den = self._count, self._num, self._den
        for k, (grad, param, scratch, flat) in enumerate(
                zip(grads, self._params, self._scratch, self._flat)):
            torch.abs(grad, out=scratch)
            torch.sum(flat, 1, out=num[4 + k])
            torch.abs(param, out=scratch)
            torch.sum(flat, 1, out=den[4 + count + k])
            scratch.copy_(param)
        num[0].copy_(losses.detach())
        if self._first is None:
            self._first = losses.detach().clone()

    def after_step(self, lrs: np.ndarray) -> None:
        """Call after the update, with each row's learning rate for it."""
        count, num, den = self._count, self._num, self._den
        for k, (param, scratch, flat) in enumerate(zip(self._params, self._scratch,
                                                       self._flat)):
            torch.sub(scratch, param, out=scratch)
            torch.sum(flat.abs_(), 1, out=num[4 + count + k])
        torch.sum(num[4 : 4 + count], 0, out=num[1])
        torch.sum(num[4 + count :], 0, out=num[2])
        torch.sum(den[4 + count :], 0, out=den[3])
        num[3].copy_(num[2])
        i, width = self.size, self._width
        self._sums[i].addcdiv_(num[:width], den[:width])
        self._lrs.append(lrs)
        self._steps[i] += 1

    def epoch_loss(self) -> torch.Tensor:
        """Each row's mean loss of the epoch in progress so far."""
        return self._sums[self.size, 0] / max(1, int(self._steps[self.size]))

    def end_epoch(self, metrics: dict[str, torch.Tensor]) -> None:
        """Close the epoch in progress; ``metrics``: its further values, one per row."""
        i = self.size
        lrs, self._lrs = np.stack(self._lrs), []
        same = (lrs == lrs[0]).all(axis=0)  # each row's lr, unless it moved in the epoch
        self._lr[i] = np.where(same, lrs[0], lrs.mean(axis=0))
        for key, value in metrics.items():
            if key not in self._extra:
                self._extra[key] = torch.full((self.capacity, self._sums.shape[2]),
                                              float("nan"), dtype=self._sums.dtype,
                                              device=self._sums.device)
            self._extra[key][i] = value.detach()
        self.size = i + 1

    def drain(self) -> list[EpochStats]:
        """Each row's statistics of the epochs ended since the last drain."""
        n = self.size
        steps = torch.from_numpy(self._steps[:n]).to(self._sums).view(-1, 1, 1)
        means = (self._sums[:n] / steps).permute(1, 0, 2)  # (metric, epoch, row)
        columns = torch.cat([means, *(c[:n].unsqueeze(0) for c in self._extra.values())])
        host = columns.cpu().numpy().astype(np.float64)
        first = self._first.cpu().numpy() if self.start == 0 and self._first is not None else None
        width = self._width
        out = []
        for b in range(host.shape[2]):
            extra = {key: host[width + j, :, b].copy() for j, key in enumerate(self._extra)}
            extra.update(tensor_extra(self._tensors, host[4:width, :, b]))
            out.append(EpochStats(self.start, *(host[m, :, b].copy() for m in range(4)),
                                  self._lr[:n, b].copy(), extra=extra,
                                  initial_loss=None if first is None else float(first[b])))
        self._sums.zero_()
        self._steps[:] = 0
        for column in self._extra.values():
            column.fill_(float("nan"))
        self.start += n
        self.size = 0
        return out
