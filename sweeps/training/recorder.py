"""Per-epoch statistics without a host synchronisation per epoch.

Each epoch copies the parameters (before the step), their gradients and the loss into a
preallocated table on the parameters' device; ``drain`` reduces a whole chunk of epochs at
once and moves the result to the host in one transfer. A mini-batch run sums each epoch's
per-step statistics on the device instead (``StepRecorder``, in
``sweeps.training.step_recorder``).

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

from sweeps.training.stats import EpochStats, tensor_extra, tensor_keys
from sweeps.training.step_recorder import StepRecorder

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
