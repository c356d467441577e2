"""Per-epoch means of per-step statistics of mini-batch runs, without a host synchronisation
per step: one trial (``StepRecorder``) or the rows of a batch of trials (``RowStepRecorder``).

Each step adds one row of numbers per trial (loss, mean |grad|, mean |delta theta|, update
ratio, and with ``tensors`` each tensor's mean |grad| and update ratio) to its epoch's sums on
the parameters' device. A step costs one copy of the parameters (before the step) into a
scratch buffer of their size, which the update is then subtracted from in place, and three L1
sums per tensor (gradient, parameters before, update): each an ``abs`` into that buffer and a
``sum`` per row written straight into the step's numerators and denominators, so per-tensor
sums come at no extra copy. (On the CPU ``abs`` then ``sum`` beats ``vector_norm(x, 1)`` and
``_foreach_norm(xs, 1)``, and is more accurate in float32: the README has the figure.) The
step's row is then one ``addcdiv_`` into the epoch's sums, and its squared losses one
``addcmul_`` into theirs (for the spread of the epoch's step losses, ``EpochStats.loss_std``).
``end_epoch`` stores the epoch's other metrics (validation), still on the device; ``drain``
divides by the steps and moves the whole chunk to the host in one transfer.

With ``step_trace`` (the expected steps an epoch; ``log_steps``) each step's losses are also
copied into a preallocated buffer of ``capacity * step_trace`` rows on the device (it doubles
where an epoch has more steps) and its learning rates kept on the host: ``drain`` moves the
losses in the same transfer and returns them as the statistics' ``trace`` (``StepTrace``),
steps numbered from 0 across the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sweeps.training.stats import EpochStats, StepTrace, tensor_extra

__all__ = ["RowStepRecorder", "StepRecorder"]


class RowStepRecorder:
    """Statistics of up to ``capacity`` epochs of the trials stacked in ``params`` (first
    dimension: one row per trial, contiguous); ``tensors`` names each parameter for its
    per-tensor statistics (empty: none)."""

    def __init__(self, params: list[torch.Tensor], capacity: int,
                 tensors: Sequence[str] = (), step_trace: int | None = None) -> None:
        self._params = [p.detach() for p in params]
        if not all(p.is_contiguous() for p in self._params):
            raise ValueError("StepRecorder needs contiguous parameters")
        if tensors and len(tensors) != len(params):
            raise ValueError(f"tensors must name each of the {len(params)} parameters "
                             f"but got {len(tensors)} names.")
        self._tensors = tuple(tensors)
        like, count = self._params[0], len(self._params)
        rows = like.shape[0]
        # the parameters before the step, then minus the update; before that, scratch for |x|
        self._scratch = [torch.empty_like(p) for p in self._params]
        self._flat = [s.view(rows, -1) for s in self._scratch]
        sizes = [s.shape[1] for s in self._flat]
        # one step's rows are numerator / denominator, one column per trial: loss / 1,
        # sum|g| / numel, sum|dtheta| / numel, sum|dtheta| / sum|theta|, then each tensor's
        # sum|g| / numel and sum|dtheta| / sum|theta|; the L1 sums are written into these rows
        self._num = torch.zeros((4 + 2 * count, rows), dtype=like.dtype, device=like.device)
        self._den = torch.ones_like(self._num)
        self._den[1:3] = sum(sizes)
        self._den[4 : 4 + count] = torch.tensor(sizes, dtype=like.dtype).view(-1, 1)
        self._width = 4 + 2 * len(self._tensors)  # the rows recorded
        # sums in float64 (float32 where the device has no float64)
        wide = torch.float32 if like.device.type == "mps" else torch.float64
        self._sums = torch.zeros((capacity, self._width, rows), dtype=wide, device=like.device)
        self._squares = torch.zeros((capacity, rows), dtype=wide, device=like.device)  # sum l^2
        self._extra: dict[str, torch.Tensor] = {}  # one (capacity, rows) table per metric
        self._steps = np.zeros(capacity, dtype=np.int64)
        self._lr = np.empty((capacity, rows))
        self._lrs: list[np.ndarray] = []  # the learning rates of the epoch in progress
        self._first: torch.Tensor | None = None  # each row's first loss, before its first step
        self._count = count
        # log_steps: each step's losses (device) and learning rates (host) since the last drain
        self._trace: torch.Tensor | None = None
        if step_trace is not None:
            self._trace = torch.empty((max(1, capacity * step_trace), rows), dtype=wide,
                                      device=like.device)
        self._trace_lr: list[np.ndarray] = []
        self._trace_start = 0  # global index of the first step since the last drain
        self._step_trace = step_trace
        self.capacity = capacity
        self.start = 0  # epoch of the first row
        self.size = 0  # epochs ended since the last drain

    @property
    def full(self) -> bool:
        return self.size == self.capacity

    def before_step(self, losses: torch.Tensor, grads: Sequence[torch.Tensor | None]) -> None:
        """Call after ``backward`` and before the update; ``losses``: one per row."""
        count, num, den = self._count, self._num, self._den
        # tensor by tensor, so that each piece of the buffer is still in cache for the next op
        for k, (grad, param, scratch, flat) in enumerate(
                zip(grads, self._params, self._scratch, self._flat)):
            if grad is None:  # an unused tensor: no gradient, |g| = 0
                num[4 + k].zero_()
            else:
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
            torch.sub(scratch, param, out=scratch)  # before - after: minus the update
            torch.sum(flat.abs_(), 1, out=num[4 + count + k])
        torch.sum(num[4 : 4 + count], 0, out=num[1])
        torch.sum(num[4 + count :], 0, out=num[2])
        torch.sum(den[4 + count :], 0, out=den[3])
        num[3].copy_(num[2])
        i, width = self.size, self._width
        self._sums[i].addcdiv_(num[:width], den[:width])
        self._squares[i].addcmul_(num[0], num[0])
        self._lrs.append(lrs)
        self._steps[i] += 1
        if self._trace is not None:
            j = len(self._trace_lr)
            if j == len(self._trace):
                self._grow_trace()
            self._trace[j].copy_(num[0])  # the losses this step back-propagated, as summed
            self._trace_lr.append(lrs)

    def _grow_trace(self) -> None:
        """Twice the room for step losses (an epoch with more steps than expected)."""
        assert self._trace is not None
        grown = self._trace.new_empty((2 * len(self._trace), self._trace.shape[1]))
        grown[: len(self._trace)].copy_(self._trace)
        self._trace = grown

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
        """Each row's statistics of the epochs ended since the last drain; a partial epoch is
        dropped."""
        n = self.size
        steps = torch.from_numpy(self._steps[:n]).to(self._sums).view(-1, 1, 1)
        means = (self._sums[:n] / steps).permute(1, 0, 2)  # (metric, epoch, row)
        columns = torch.cat([means, *(c[:n].unsqueeze(0) for c in self._extra.values())])
        ended = int(self._steps[:n].sum())
        parts = [columns.reshape(-1), self._squares[:n].reshape(-1)]
        if self._trace is not None:  # the step losses travel in the same transfer
            parts.append(self._trace[:ended].reshape(-1))
        if self.start == 0 and self._first is not None:
            parts.append(self._first.to(columns.dtype))
        flat = torch.cat(parts).cpu().numpy().astype(np.float64)
        host = flat[: columns.numel()].reshape(columns.shape)
        rest = flat[columns.numel():]
        loss_std = _spread(rest[: n * host.shape[2]].reshape(n, host.shape[2]), host[0],
                           self._steps[:n])
        rest = rest[n * host.shape[2]:]
        traced = None
        if self._trace is not None:
            traced = rest[: ended * host.shape[2]].reshape(ended, -1)
            rest = rest[ended * host.shape[2]:]
            lrs = (np.stack(self._trace_lr[:ended]) if ended
                   else np.empty((0, host.shape[2])))
        first = rest if self.start == 0 and self._first is not None else None
        width = self._width
        out = []
        for b in range(host.shape[2]):
            extra = {key: host[width + j, :, b].copy() for j, key in enumerate(self._extra)}
            extra.update(tensor_extra(self._tensors, host[4:width, :, b]))
            trace = None
            if traced is not None:
                trace = StepTrace(self._trace_start, self._steps[:n].copy(),
                                  traced[:, b].copy(), lrs[:, b].copy())
            out.append(EpochStats(self.start, *(host[m, :, b].copy() for m in range(4)),
                                  self._lr[:n, b].copy(), extra=extra,
                                  initial_loss=None if first is None else float(first[b]),
                                  trace=trace, loss_std=loss_std[:, b].copy(),
                                  steps=self._steps[:n].copy()))
        self._trace_start += ended  # a partial epoch's steps are dropped with it
        self._trace_lr = []
        self._sums.zero_()
        self._squares.zero_()
        self._steps[:] = 0
        self._lrs = []
        for column in self._extra.values():
            column.fill_(float("nan"))
        self.start += n
        self.size = 0
        return out

    def for_rows(self, params: list[torch.Tensor]) -> RowStepRecorder:
        """This recorder, right after a drain, for ``params``: the rows still training
        (``sweeps.batched.stack.TrialStack.compact``); it goes on at the same epoch."""
        if self.size:
            raise RuntimeError("for_rows needs a drained recorder")
        new = RowStepRecorder(params, self.capacity, self._tensors, self._step_trace)
        new.start, new._trace_start = self.start, self._trace_start
        new._first = self._first if self.start == 0 else None
        return new


def _spread(squares: np.ndarray, means: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """(epoch, row) standard deviations of the step losses (ddof 1) from the epochs' sums of
    squared losses, mean losses and steps; NaN for an epoch of fewer than two steps."""
    count = steps.astype(np.float64).reshape(-1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (squares - count * means**2) / (count - 1)
    return np.where(count > 1, np.sqrt(np.maximum(variance, 0.0)), np.nan)


class StepRecorder:
    """``RowStepRecorder`` for one trial: its parameters as one row (views, which follow the
    updates), its loss a 0-dim tensor, its learning rate a float, its statistics one
    ``EpochStats``."""

    def __init__(self, params: list[torch.Tensor], capacity: int,
                 tensors: Sequence[str] = (), step_trace: int | None = None) -> None:
        self.rows = RowStepRecorder([p.detach().unsqueeze(0) for p in params], capacity,
                                    tensors, step_trace)

    @property
    def full(self) -> bool:
        return self.rows.full

    @property
    def size(self) -> int:
        return self.rows.size

    @property
    def capacity(self) -> int:
        return self.rows.capacity

    def before_step(self, loss: torch.Tensor, grads: Sequence[torch.Tensor | None]) -> None:
        """Call after ``backward`` and before ``optimizer.step``."""
        self.rows.before_step(loss.detach().view(1),
                              [None if g is None else g.unsqueeze(0) for g in grads])

    def after_step(self, lr: float) -> None:
        """Call after ``optimizer.step``, with the learning rate that step used."""
        self.rows.after_step(np.array([lr]))

    def epoch_loss(self) -> torch.Tensor:
        """The mean loss of the epoch in progress so far (a 0-dim tensor on the device)."""
        return self.rows.epoch_loss()[0]

    def end_epoch(self, metrics: dict[str, torch.Tensor]) -> None:
        """Close the epoch in progress; ``metrics`` are its further values (0-dim tensors)."""
        self.rows.end_epoch({key: value.view(1) for key, value in metrics.items()})

    def drain(self) -> EpochStats:
        """Statistics of the epochs ended since the last drain; a partial epoch is dropped."""
        return self.rows.drain()[0]
