"""Per-epoch statistics without a host synchronisation per epoch.

Each epoch copies the parameters (before the step), their gradients and the loss into a
preallocated table on the parameters' device; ``drain`` reduces a whole chunk of epochs at
once and moves the result to the host in one transfer.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from sweeps.training.stats import EpochStats

__all__ = ["Recorder", "chunk_capacity", "reduce_chunk"]

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
