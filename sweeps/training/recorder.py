"""Per-epoch statistics without a host synchronisation per epoch.

Each epoch copies the parameters (before the step), their gradients and the loss into a
preallocated table on the parameters' device; ``drain`` reduces a whole chunk of epochs at
once and moves the result to the host in one transfer. A mini-batch run sums each epoch's
per-step statistics on the device instead (``StepRecorder``).

For an objective of 2 to ``MAX_TENSORS`` parameter tensors both also record each tensor's
mean |grad| and update ratio (``TENSOR_METRICS``): a few more reductions over the same
buffers, no more copies. ``tracked_tensors`` decides which objectives get them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from sweeps.training.stats import (
    TENSOR_METRICS,
    EpochStats,
    StepTrace,
    tensor_keys,
    tensor_metric,
)

__all__ = ["MAX_TENSORS", "Recorder", "StepRecorder", "chunk_capacity", "reduce_chunk",
           "tensor_extra", "tracked_tensors"]

log = logging.getLogger(__name__)

_BUDGET_BYTES = 64 * 2**20  # memory for the per-epoch copies of one trial
# Per-tensor statistics for objectives of at most this many parameter tensors: each costs a
# few reductions per step and two metric values per epoch in MLflow.
MAX_TENSORS = 64
_TOLD: set[int] = set()  # tensor counts over MAX_TENSORS already logged (once a process)


def tracked_tensors(names: Sequence[str], per_tensor: bool = True) -> tuple[str, ...]:
    """The metric keys (``tensor_keys``) of the parameter tensors ``names`` that get
    per-tensor statistics: all of them, or none where ``per_tensor`` is off, where there is
    one tensor (its statistics are the overall ones) or more than ``MAX_TENSORS``."""
    if not per_tensor or len(names) < 2:
        return ()
    if len(names) > MAX_TENSORS:
        if len(names) not in _TOLD:
            _TOLD.add(len(names))
            log.info("no per-tensor statistics: the objective has %d parameter tensors, "
                     "more than %d", len(names), MAX_TENSORS)
        return ()
    return tensor_keys(names)


def chunk_capacity(params: list[torch.Tensor], wanted: int) -> int:
    """Epochs per chunk: ``wanted``, fewer where the copies would exceed the memory budget."""
    per_epoch = sum(p.numel() * p.element_size() for p in params) * 2
    return max(1, min(wanted, _BUDGET_BYTES // max(1, per_epoch)))


class Recorder:
    """Collects the statistics of up to ``capacity`` epochs between two drains.

    Each epoch is one row of a preallocated table, written by a single ``torch.cat``: the
    parameters before the step, their gradients and the loss, all flattened (one dispatch per
    epoch, not one per tensor). Row ``capacity`` takes the parameters after the last step.
    ``tensors`` names each parameter for its per-tensor statistics (``tracked_tensors``;
    empty: none), reduced over column ranges of the same table.
    """

    def __init__(self, params: list[torch.Tensor], capacity: int,
                 tensors: Sequence[str] = ()) -> None:
        self._params = [p.detach() for p in params]
        if not all(p.is_contiguous() for p in self._params):
            raise ValueError("Recorder needs contiguous parameters")
        if tensors and len(tensors) != len(params):
            raise ValueError(f"tensors must name each of the {len(params)} parameters "
                             f"but got {len(tensors)} names.")
        self._flat = [p.view(-1) for p in self._params]  # views: they follow the updates
        self._numel = sum(p.numel() for p in self._params)
        self._tensors = tuple(tensors)
        self._sizes = [p.numel() for p in self._params] if tensors else [self._numel]
        dtype = params[0].dtype if params[0].is_floating_point() else torch.float64
        self._table = torch.empty((capacity + 1, 2 * self._numel + 1), dtype=dtype,
                                  device=params[0].device)
        self._rows = list(self._table.unbind(0))
        self._multi_dim = [p.dim() != 1 for p in self._params]  # their grads need flattening
        self._lr = np.empty(capacity)
        self.capacity = capacity
        self.start = 0  # epoch of the first recorded row
        self.size = 0  # rows recorded since the last drain

    @property
    def full(self) -> bool:
        return self.size == self.capacity

    def record(self, loss: torch.Tensor, lr: float, grads: list[torch.Tensor | None]) -> None:
        """Call after ``backward`` and before ``optimizer.step``."""
        i = self.size
        parts = [*self._flat]
        for p, g, flatten in zip(self._params, grads, self._multi_dim):
            if g is None:
                g = torch.zeros_like(p)
            parts.append(g.view(-1) if flatten else g)
        parts.append(loss.detach().view(1))
        torch.cat(parts, out=self._rows[i])
        self._lr[i] = lr
        self.size = i + 1

    def drain(self) -> EpochStats:
        """Statistics of the recorded epochs; call after the last recorded step."""
        n, k = self.size, self._numel
        torch.cat(self._flat, out=self._table[n, :k])
        table = self._table
        thetas = table[:, :k].split(self._sizes, dim=1)  # views: one per tensor, or the whole
        grads = table[:, k : 2 * k].split(self._sizes, dim=1)
        rows = reduce_chunk(table[:, 2 * k], thetas, grads, n, dims=1,
                            per_tensor=bool(self._tensors))
        stats = EpochStats(self.start, *rows[:4], self._lr[:n].copy(),
                           extra=tensor_extra(self._tensors, rows[4:]))
        self.start += n
        self.size = 0
        return stats


def reduce_chunk(loss: torch.Tensor, thetas: Sequence[torch.Tensor],
                 grads: Sequence[torch.Tensor], n: int, dims: int,
                 per_tensor: bool = False) -> np.ndarray:
    """The per-epoch statistics of ``n`` recorded epochs as float64 rows on the host: loss,
    mean |grad|, mean |delta theta|, update ratio, then with ``per_tensor`` the mean |grad| of
    each piece and the update ratio of each piece (``tensor_extra`` names them).

    ``thetas`` and ``grads`` hold the parameters and gradients in pieces (with
    ``per_tensor``: one per parameter tensor), ``thetas`` with ``n + 1`` rows (the last: after
    the last step); ``dims`` leading dimensions are kept (1: epochs; 2: epochs and trials of a
    batch), the rest are summed: one L1 reduction per piece and quantity."""

    def l1(x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(x.reshape(*x.shape[:dims], -1), 1, dim=dims)

    grad = torch.stack([l1(g[:n]) for g in grads])  # (pieces, n[, trials])
    update = torch.stack([l1(t[1 : n + 1] - t[:n]) for t in thetas])
    size = torch.stack([l1(t[:n]) for t in thetas])
    sizes = [math.prod(g.shape[dims:]) for g in grads]
    numel = sum(sizes)
    update_sum = update.sum(0)
    rows = torch.stack([loss[:n].to(grad.dtype), grad.sum(0) / numel, update_sum / numel,
                        update_sum / size.sum(0)])
    if per_tensor:
        numels = torch.tensor(sizes, dtype=grad.dtype, device=grad.device)
        numels = numels.view(-1, *[1] * dims)
        rows = torch.cat([rows, grad / numels, update / size])
    return rows.cpu().numpy().astype(np.float64)


def tensor_extra(tensors: Sequence[str], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The per-tensor metrics of ``reduce_chunk``'s (or ``StepRecorder``'s) rows after the
    first four: each tensor's mean |grad|, then each tensor's update ratio."""
    count = len(tensors)
    return {tensor_metric(metric, tensor): rows[j * count + i].copy()
            for j, metric in enumerate(TENSOR_METRICS) for i, tensor in enumerate(tensors)}


class StepRecorder:
    """The per-epoch means of per-step statistics of a mini-batch run, for up to ``capacity``
    epochs between two drains, without a host synchronisation per step.

    Each step adds one row (loss, mean |grad|, mean |delta theta|, update ratio, and with
    ``tensors`` each tensor's mean |grad| and update ratio) to its epoch's sums on the
    parameters' device. The step costs one copy of the parameters (before the step) into a
    flat buffer of their size, which the update is then subtracted from in place, and three
    L1 sums per tensor (gradient, parameters before, update): each an ``abs`` into that buffer
    and a ``sum`` written straight into the step's numerators and denominators, so per-tensor
    sums come at no extra copy. (On the CPU ``abs`` then ``sum`` is about five times faster
    than ``vector_norm(x, 1)`` or ``_foreach_norm(xs, 1)``, and more accurate in float32.)
    The step's row is then one ``addcdiv_`` into the epoch's sums. ``end_epoch`` stores the
    epoch's other metrics (validation), still on the device; ``drain`` divides by the steps
    and moves the whole chunk to the host in one transfer.

    With ``step_trace`` (the expected steps an epoch; ``log_steps``) each step's loss is also
    copied into a preallocated buffer of ``capacity * step_trace`` values on the device (it
    doubles where an epoch has more steps) and its learning rate, a Python float, kept on the
    host: ``drain`` moves the losses in the same transfer and returns them as the
    statistics' ``trace`` (``StepTrace``), steps numbered from 0 across the run.
    """

    def __init__(self, params: list[torch.Tensor], capacity: int,
                 tensors: Sequence[str] = (), step_trace: int | None = None) -> None:
        self._params = [p.detach() for p in params]
        if not all(p.is_contiguous() for p in self._params):
            raise ValueError("StepRecorder needs contiguous parameters")
        if tensors and len(tensors) != len(params):
            raise ValueError(f"tensors must name each of the {len(params)} parameters "
                             f"but got {len(tensors)} names.")
        self._numel = sum(p.numel() for p in self._params)
        self._tensors = tuple(tensors)
        like, count = self._params[0], len(self._params)
        sizes = [p.numel() for p in self._params]
        # the parameters before the step, then minus the update; before that, scratch for |x|
        self._buffer = torch.empty(self._numel, dtype=like.dtype, device=like.device)
        self._pieces = list(self._buffer.split(sizes))  # flat views, one per tensor
        self._shaped = [b.view_as(p) for b, p in zip(self._pieces, self._params)]
        # one step's row is numerator / denominator: loss / 1, sum|g| / numel,
        # sum|dtheta| / numel, sum|dtheta| / sum|theta|, then each tensor's sum|g| / numel
        # and sum|dtheta| / sum|theta|; the L1 sums are written into these views
        self._num = torch.zeros(4 + 2 * count, dtype=like.dtype, device=like.device)
        self._den = torch.ones_like(self._num)
        self._den[1:3] = self._numel
        self._den[4 : 4 + count] = torch.tensor(sizes, dtype=like.dtype)
        self._grad_l1 = list(self._num[4 : 4 + count].unbind())
        self._update_l1 = list(self._num[4 + count :].unbind())
        self._size_l1 = list(self._den[4 + count :].unbind())
        self._width = 4 + 2 * len(self._tensors)  # the row's columns recorded
        # sums in float64 (float32 where the device has no float64)
        wide = torch.float32 if like.device.type == "mps" else torch.float64
        self._sums = torch.zeros((capacity, self._width), dtype=wide, device=like.device)
        self._rows = list(self._sums.unbind(0))
        self._extra: dict[str, torch.Tensor] = {}  # one column per further metric
        self._steps = np.zeros(capacity, dtype=np.int64)
        self._lr = np.empty(capacity)
        self._lrs: list[float] = []  # the learning rates of the epoch in progress
        self._pending = False
        self._first: torch.Tensor | None = None  # the run's first loss, before its first step
        # log_steps: each step's loss (device) and lr (host) since the last drain
        self._trace: torch.Tensor | None = None
        if step_trace is not None:
            self._trace = torch.empty(max(1, capacity * step_trace), dtype=wide,
                                      device=like.device)
        self._trace_lr: list[float] = []
        self._trace_start = 0  # global index of the first step since the last drain
        self.capacity = capacity
        self.start = 0  # epoch of the first row
        self.size = 0  # epochs ended since the last drain

    @property
    def full(self) -> bool:
        return self.size == self.capacity

    def before_step(self, loss: torch.Tensor, grads: list[torch.Tensor | None]) -> None:
        """Call after ``backward`` and before ``optimizer.step``."""
        # tensor by tensor, so that each piece of the buffer is still in cache for the next op
        for grad, param, shaped, piece, grad_l1, size_l1 in zip(
                grads, self._params, self._shaped, self._pieces, self._grad_l1, self._size_l1):
            if grad is None:  # an unused tensor: no gradient, |g| = 0
                grad_l1.zero_()
            else:
                torch.abs(grad, out=shaped)
                torch.sum(piece, 0, out=grad_l1)
            torch.abs(param, out=shaped)
            torch.sum(piece, 0, out=size_l1)
            shaped.copy_(param)
        self._num[0].copy_(loss.detach())
        if self._first is None:
            self._first = loss.detach().clone()
        self._pending = True

    def after_step(self, lr: float) -> None:
        """Call after ``optimizer.step``, with the learning rate that step used."""
        assert self._pending, "before_step first"
        for param, shaped, piece, update_l1 in zip(self._params, self._shaped, self._pieces,
                                                   self._update_l1):
            torch.sub(shaped, param, out=shaped)  # before - after: minus the update
            torch.sum(piece.abs_(), 0, out=update_l1)
        count = len(self._params)
        num, den = self._num, self._den
        torch.sum(num[4 : 4 + count], 0, out=num[1])
        torch.sum(num[4 + count :], 0, out=num[2])
        torch.sum(den[4 + count :], 0, out=den[3])
        num[3].copy_(num[2])
        i, width = self.size, self._width
        self._rows[i].addcdiv_(num[:width], den[:width])
        self._lrs.append(lr)
        self._steps[i] += 1
        if self._trace is not None:
            j = len(self._trace_lr)
            if j == len(self._trace):
                self._grow_trace()
            self._trace[j].copy_(num[0])  # the loss this step back-propagated, as summed
            self._trace_lr.append(lr)
        self._pending = False

    def _grow_trace(self) -> None:
        """Twice the room for step losses (an epoch with more steps than expected)."""
        assert self._trace is not None
        grown = torch.empty(2 * len(self._trace), dtype=self._trace.dtype,
                            device=self._trace.device)
        grown[: len(self._trace)].copy_(self._trace)
        self._trace = grown

    def epoch_loss(self) -> torch.Tensor:
        """The mean loss of the epoch in progress so far (a 0-dim tensor on the device)."""
        return self._sums[self.size, 0] / max(1, int(self._steps[self.size]))

    def end_epoch(self, metrics: dict[str, torch.Tensor]) -> None:
        """Close the epoch in progress; ``metrics`` are its further values (0-dim tensors)."""
        i = self.size
        lrs, self._lrs = self._lrs, []
        same = all(lr == lrs[0] for lr in lrs)  # exactly the lr, unless it moved in the epoch
        self._lr[i] = lrs[0] if same else float(np.mean(lrs))
        for key, value in metrics.items():
            if key not in self._extra:
                self._extra[key] = torch.full((self.capacity,), float("nan"),
                                              dtype=self._sums.dtype, device=self._sums.device)
            self._extra[key][i] = value.detach()
        self.size = i + 1

    def drain(self) -> EpochStats:
        """Statistics of the epochs ended since the last drain; a partial epoch is dropped."""
        n = self.size
        means = self._sums[:n] / torch.from_numpy(self._steps[:n]).to(self._sums)[:, None]
        columns = torch.cat([means.T, *(c[:n].unsqueeze(0) for c in self._extra.values())])
        trace = None
        if self._trace is None:
            host = columns.cpu().numpy().astype(np.float64)
        else:  # the step losses of the ended epochs travel in the same transfer
            ended = int(self._steps[:n].sum())
            flat = torch.cat([columns.reshape(-1), self._trace[:ended]]).cpu().numpy()
            flat = flat.astype(np.float64)
            host = flat[: columns.numel()].reshape(columns.shape)
            trace = StepTrace(self._trace_start, self._steps[:n].copy(),
                              flat[columns.numel():].copy(),
                              np.array(self._trace_lr[:ended], dtype=np.float64))
            self._trace_start += ended  # a partial epoch's steps are dropped with it
            self._trace_lr = []
        width = self._sums.shape[1]
        extra = {key: host[width + j].copy() for j, key in enumerate(self._extra)}
        extra.update(tensor_extra(self._tensors, host[4:width]))
        initial = float(self._first) if self.start == 0 and self._first is not None else None
        stats = EpochStats(self.start, host[0].copy(), host[1].copy(), host[2].copy(),
                           host[3].copy(), self._lr[:n].copy(), extra=extra,
                           initial_loss=initial, trace=trace)
        self._sums.zero_()
        self._steps[:] = 0
        self._lrs = []
        for column in self._extra.values():
            column.fill_(float("nan"))
        self.start += n
        self.size = 0
        return stats
