"""Per-epoch statistics without a host synchronisation per epoch.

Each epoch copies the parameters (before the step), their gradients and the loss into a
preallocated table on the parameters' device; ``drain`` reduces a whole chunk of epochs at
once and moves the result to the host in one transfer. A mini-batch run sums each epoch's
per-step statistics on the device instead (``StepRecorder``).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from sweeps.training.stats import EpochStats

__all__ = ["Recorder", "StepRecorder", "chunk_capacity", "reduce_chunk"]

_BUDGET_BYTES = 64 * 2**20  # memory for the per-epoch copies of one trial


def chunk_capacity(params: list[torch.Tensor], wanted: int) -> int:
    """Epochs per chunk: ``wanted``, fewer where the copies would exceed the memory budget."""
    per_epoch = sum(p.numel() * p.element_size() for p in params) * 2
    return max(1, min(wanted, _BUDGET_BYTES // max(1, per_epoch)))


class Recorder:
    """Collects the statistics of up to ``capacity`` epochs between two drains.

    Each epoch is one row of a preallocated table, written by a single ``torch.cat``: the
    parameters before the step, their gradients and the loss, all flattened (one dispatch per
    epoch, not one per tensor). Row ``capacity`` takes the parameters after the last step.
    """

    def __init__(self, params: list[torch.Tensor], capacity: int) -> None:
        self._params = [p.detach() for p in params]
        if not all(p.is_contiguous() for p in self._params):
            raise ValueError("Recorder needs contiguous parameters")
        self._flat = [p.view(-1) for p in self._params]  # views: they follow the updates
        self._numel = sum(p.numel() for p in self._params)
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
        loss, grad_mean, update_mean, ratio = reduce_chunk(
            table[:, 2 * k], [table[:, :k]], [table[:, k : 2 * k]], n, k, dims=1)
        stats = EpochStats(self.start, loss, grad_mean, update_mean, ratio, self._lr[:n].copy())
        self.start += n
        self.size = 0
        return stats


def reduce_chunk(loss: torch.Tensor, thetas: list[torch.Tensor], grads: list[torch.Tensor],
                 n: int, numel: int, dims: int) -> np.ndarray:
    """The per-epoch statistics of ``n`` recorded epochs as float64 rows on the host: loss,
    mean |grad|, mean |delta theta|, update ratio. ``thetas`` hold ``n + 1`` rows (the last:
    after the last step); ``dims`` leading dimensions are kept (1: epochs; 2: epochs and
    trials of a batch), the rest are summed over every parameter tensor."""

    def total(parts: list[torch.Tensor]) -> torch.Tensor:
        return functools.reduce(torch.add, parts)

    grad_sum = total([g[:n].abs().flatten(dims).sum(dims) for g in grads])
    update_sum = total([(t[1 : n + 1] - t[:n]).abs().flatten(dims).sum(dims) for t in thetas])
    size_sum = total([t[:n].abs().flatten(dims).sum(dims) for t in thetas])
    rows = torch.stack([loss[:n].to(grad_sum.dtype), grad_sum / numel, update_sum / numel,
                        update_sum / size_sum])
    return rows.cpu().numpy().astype(np.float64)


class StepRecorder:
    """The per-epoch means of per-step statistics of a mini-batch run, for up to ``capacity``
    epochs between two drains, without a host synchronisation per step.

    Each step adds one row (loss, mean |grad|, mean |delta theta|, update ratio) to its epoch's
    sums on the parameters' device: two copies of the flattened parameters (before and after
    the step), one of the gradients, and a few reductions. ``end_epoch`` stores the epoch's
    other metrics (validation), still on the device; ``drain`` divides by the steps and moves
    the whole chunk to the host in one transfer.
    """

    def __init__(self, params: list[torch.Tensor], capacity: int) -> None:
        self._params = [p.detach() for p in params]
        if not all(p.is_contiguous() for p in self._params):
            raise ValueError("StepRecorder needs contiguous parameters")
        self._flat = [p.view(-1) for p in self._params]
        self._numel = sum(p.numel() for p in self._params)
        like = self._params[0]
        dtype = like.dtype if like.is_floating_point() else torch.float64
        self._before = like.new_empty(self._numel, dtype=dtype)
        self._after = torch.empty_like(self._before)
        self._grad = torch.empty_like(self._before)
        self._zeros = [torch.zeros(p.numel(), dtype=dtype, device=like.device)
                       for p in self._params]  # the gradient of an unused parameter
        # sums in float64 (float32 where the device has no float64)
        wide = torch.float32 if like.device.type == "mps" else torch.float64
        self._sums = torch.zeros((capacity, 4), dtype=wide, device=like.device)
        self._rows = list(self._sums.unbind(0))
        self._extra: dict[str, torch.Tensor] = {}  # one column per further metric
        self._steps = np.zeros(capacity, dtype=np.int64)
        self._lr = np.empty(capacity)
        self._lrs: list[float] = []  # the learning rates of the epoch in progress
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self.capacity = capacity
        self.start = 0  # epoch of the first row
        self.size = 0  # epochs ended since the last drain

    @property
    def full(self) -> bool:
        return self.size == self.capacity

    def before_step(self, loss: torch.Tensor, grads: list[torch.Tensor | None]) -> None:
        """Call after ``backward`` and before ``optimizer.step``."""
        torch.cat(self._flat, out=self._before)
        parts = [z if g is None else g.view(-1) for g, z in zip(grads, self._zeros)]
        torch.cat(parts, out=self._grad)
        self._pending = (loss.detach(), torch.linalg.vector_norm(self._grad, 1))

    def after_step(self, lr: float) -> None:
        """Call after ``optimizer.step``, with the learning rate that step used."""
        assert self._pending is not None, "before_step first"
        loss, grad_sum = self._pending
        torch.cat(self._flat, out=self._after)
        update_sum = torch.linalg.vector_norm(self._after.sub_(self._before), 1)
        size_sum = torch.linalg.vector_norm(self._before, 1)
        numel = self._numel
        row = torch.stack([loss.to(grad_sum.dtype), grad_sum / numel, update_sum / numel,
                           update_sum / size_sum])
        i = self.size
        self._rows[i].add_(row)
        self._lrs.append(lr)
        self._steps[i] += 1
        self._pending = None

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
        host = columns.cpu().numpy().astype(np.float64)
        extra = {key: host[4 + j].copy() for j, key in enumerate(self._extra)}
        stats = EpochStats(self.start, host[0].copy(), host[1].copy(), host[2].copy(),
                           host[3].copy(), self._lr[:n].copy(), extra=extra)
        self._sums.zero_()
        self._steps[:] = 0
        self._lrs = []
        for column in self._extra.values():
            column.fill_(float("nan"))
        self.start += n
        self.size = 0
        return stats
