"""Per-epoch training statistics, as typed arrays (SPEC section 5)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

__all__ = ["EPOCH_METRICS", "STEP_METRICS", "TENSOR_METRICS", "EpochStats", "StepTrace",
           "tensor_extra", "tensor_keys", "tensor_metric"]

EPOCH_METRICS = ("loss", "grad_abs_mean", "update_abs_mean", "update_ratio", "lr")
# per training step (``log_steps``), at MLflow step = the run's global step index
STEP_METRICS = ("step_loss", "step_lr")
# per parameter tensor, as extra metrics named ``<metric>/<tensor>`` (e.g. update_ratio/0.weight)
TENSOR_METRICS = ("grad_abs_mean", "update_ratio")
_NOT_IN_KEY = re.compile(r"[^\w.\- ]")  # MLflow's metric names allow these (and '/', ':')
_KEY_LENGTH = 250 - max(len(m) for m in TENSOR_METRICS) - 1  # MLflow's limit, less the prefix


def tensor_metric(metric: str, tensor: str) -> str:
    """The extra metric holding ``metric`` (one of ``TENSOR_METRICS``) of tensor ``tensor``."""
    return f"{metric}/{tensor}"


def tensor_keys(names: Sequence[str]) -> tuple[str, ...]:
    """The ``<tensor>`` part of the per-tensor metric names of parameters ``names``: each name
    as it is, where MLflow accepts it in a metric name (letters, digits, ``_ - .`` and spaces:
    ``0.weight``, ``encoder.layers.3.bias``); any other character becomes ``_``, an overlong
    name keeps its end, and a name that would repeat an earlier key gets ``_2``, ``_3``..."""
    keys: list[str] = []
    for name in names:
        key = _NOT_IN_KEY.sub("_", name)
        if key in ("", ".", ".."):
            key = "_" * max(1, len(key))
        if len(key) > _KEY_LENGTH:
            key = "_" + key[-(_KEY_LENGTH - 1):]
        base, n = key, 1
        while key in keys:
            n += 1
            key = f"{base[:_KEY_LENGTH - len(str(n)) - 1]}_{n}"
        keys.append(key)
    return tuple(keys)


def tensor_extra(tensors: Sequence[str], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The per-tensor metrics of ``recorder.reduce_chunk``'s (or a step recorder's) rows
    after the first four: each tensor's mean |grad|, then each tensor's update ratio."""
    count = len(tensors)
    return {tensor_metric(metric, tensor): rows[j * count + i].copy()
            for j, metric in enumerate(TENSOR_METRICS) for i, tensor in enumerate(tensors)}


@dataclass(frozen=True)
class StepTrace:
    """Every training step of consecutive epochs (a mini-batch run with ``log_steps``).

    Step ``start + i`` is the run's global step index of ``loss[i]`` and ``lr[i]``: steps are
    counted from 0 across the run, epoch e's following epoch e-1's. ``steps[j]`` is the number
    of steps of the j-th epoch (``loss`` and ``lr`` hold ``steps.sum()`` values).
    """

    start: int  # global index of the first step
    steps: np.ndarray  # int64: steps of each epoch, in order
    loss: np.ndarray  # float64: the loss back-propagated at each step
    lr: np.ndarray  # float64: the learning rate of the first parameter group for each step

    def __post_init__(self) -> None:
        if len(self.loss) != len(self.lr) or len(self.loss) != int(np.sum(self.steps)):
            raise ValueError(f"a step trace needs sum(steps) = {int(np.sum(self.steps))} "
                             f"losses and learning rates but got {len(self.loss)} and "
                             f"{len(self.lr)}.")

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def indices(self) -> np.ndarray:
        """The global step index of each value."""
        return np.arange(self.start, self.start + len(self))

    def metric(self, name: str) -> np.ndarray:
        """The values of ``name``, one of ``STEP_METRICS``."""
        if name not in STEP_METRICS:
            raise ValueError(f"name must be one of {STEP_METRICS} but got {name!r}.")
        return self.loss if name == "step_loss" else self.lr

    def epoch_means(self) -> np.ndarray:
        """The mean loss of each epoch's steps (NaN for an epoch of none)."""
        pieces = np.split(self.loss, np.cumsum(self.steps)[:-1])
        return np.array([p.mean() if len(p) else np.nan for p in pieces[:len(self.steps)]])

    def of_epochs(self, keep: np.ndarray) -> np.ndarray:
        """A mask over the steps: those of the epochs where ``keep`` (one bool an epoch)."""
        return np.repeat(np.asarray(keep, dtype=bool), self.steps)

    def head(self, n: int) -> StepTrace:
        """The steps of the first ``n`` epochs."""
        steps = self.steps[:n]
        cut = int(steps.sum())
        return StepTrace(self.start, steps, self.loss[:cut], self.lr[:cut])

    @classmethod
    def concat(cls, parts: Sequence[StepTrace]) -> StepTrace:
        """Consecutive traces as one, from the first one's start."""
        if not parts:
            return cls(0, np.empty(0, dtype=np.int64), np.empty(0), np.empty(0))
        return cls(parts[0].start, np.concatenate([p.steps for p in parts]),
                   np.concatenate([p.loss for p in parts]), np.concatenate([p.lr for p in parts]))


@dataclass(frozen=True)
class EpochStats:
    """Statistics of the consecutive epochs ``start, start + 1, ...``.

    For a mini-batch objective each value is the mean over the epoch's steps, and ``extra``
    holds the validation metrics scored after the epoch. For an objective of several
    parameter tensors ``extra`` also holds each tensor's mean |grad| and update ratio
    (``TENSOR_METRICS``, named ``<metric>/<tensor>``; see ``tensors`` and ``per_tensor``).
    A mini-batch run with ``log_steps`` also keeps every step's loss and learning rate in
    ``trace`` (``StepTrace``; logged as ``STEP_METRICS``, not among ``names``). A mini-batch run
    always keeps the spread of each epoch's step losses (``loss_std``) and its number of steps
    (``steps``): how much of a change between epochs the batches' own noise explains
    (``loss_noise``; not among ``names``).
    """

    start: int  # index of the first epoch
    loss: np.ndarray  # loss back-propagated at the epoch
    grad_abs_mean: np.ndarray  # mean |dloss/dtheta| over all trainable elements
    update_abs_mean: np.ndarray  # mean |theta_after - theta_before|
    update_ratio: np.ndarray  # update_abs_mean / mean |theta_before|
    lr: np.ndarray  # learning rate of the first parameter group for the step
    # further per-epoch metrics by name: val_loss, val_accuracy of mini-batch objectives;
    # grad_abs_mean/<tensor>, update_ratio/<tensor> per parameter tensor
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)
    # the loss at the initial parameters where ``loss`` holds means over an epoch's steps (a
    # mini-batch run: its first batch's loss before the first step); None: ``loss[0]`` is it
    initial_loss: float | None = None
    # every step's loss and learning rate, for a mini-batch run with ``log_steps``; None: not
    # recorded. Its ``steps`` has one entry per epoch of these statistics.
    trace: StepTrace | None = None
    # the standard deviation of the losses of each epoch's steps (NaN for an epoch of one
    # step), for a mini-batch run; None: not recorded (one step an epoch: no spread)
    loss_std: np.ndarray | None = None
    # int64: the steps of each epoch, where ``loss_std`` is recorded (else None)
    steps: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.trace is not None and len(self.trace.steps) != len(self.loss):
            raise ValueError(f"the step trace must count the steps of each of the "
                             f"{len(self.loss)} epochs but has {len(self.trace.steps)} counts.")
        if (self.loss_std is None) != (self.steps is None):
            raise ValueError("loss_std and steps go together: give both or neither.")
        if self.loss_std is not None and self.steps is not None and not (
                len(self.loss_std) == len(self.steps) == len(self.loss)):
            raise ValueError(f"loss_std and steps need one value per epoch ({len(self.loss)}) "
                             f"but got {len(self.loss_std)} and {len(self.steps)}.")

    @property
    def loss_noise(self) -> np.ndarray:
        """How far each epoch's mean loss would move from the batches' noise alone: the
        standard error ``loss_std / sqrt(steps)`` (0 where not recorded or not defined, as for
        a full-batch run, whose epoch is one exact step)."""
        if self.loss_std is None or self.steps is None:
            return np.zeros(len(self))
        with np.errstate(divide="ignore", invalid="ignore"):
            noise = self.loss_std / np.sqrt(self.steps)
        return np.where(np.isfinite(noise), noise, 0.0)

    @property
    def first_loss(self) -> float:
        """The loss the run started from: ``initial_loss``, else the first epoch's."""
        return self.initial_loss if self.initial_loss is not None else float(self.loss[0])

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def epochs(self) -> np.ndarray:
        return np.arange(self.start, self.start + len(self))

    @property
    def tensors(self) -> tuple[str, ...]:
        """The parameter tensors with per-tensor metrics (``update_ratio/<tensor>`` and
        ``grad_abs_mean/<tensor>`` in ``extra``), in the objective's order; empty if none."""
        prefix = tensor_metric("update_ratio", "")
        return tuple(k[len(prefix):] for k in self.extra if k.startswith(prefix))

    def per_tensor(self, metric: str) -> dict[str, np.ndarray]:
        """``metric`` (one of ``TENSOR_METRICS``) of each tensor of ``tensors`` that has it."""
        if metric not in TENSOR_METRICS:
            raise ValueError(f"metric must be one of {TENSOR_METRICS} but got {metric!r}.")
        return {t: self.extra[tensor_metric(metric, t)] for t in self.tensors
                if tensor_metric(metric, t) in self.extra}

    @property
    def names(self) -> tuple[str, ...]:
        """Every metric these statistics hold: ``EPOCH_METRICS``, then the extra ones."""
        return EPOCH_METRICS + tuple(self.extra)

    def metric(self, name: str) -> np.ndarray:
        """The values of metric ``name`` (one of ``names``)."""
        return self.extra[name] if name in self.extra else getattr(self, name)

    def head(self, n: int) -> EpochStats:
        """The first ``n`` epochs."""
        return EpochStats(self.start, *(getattr(self, m)[:n] for m in EPOCH_METRICS),
                          extra={k: v[:n] for k, v in self.extra.items()},
                          initial_loss=self.initial_loss,
                          trace=self.trace.head(n) if self.trace is not None else None,
                          loss_std=None if self.loss_std is None else self.loss_std[:n],
                          steps=None if self.steps is None else self.steps[:n])

    def first_nonfinite(self) -> tuple[int, str] | None:
        """(epoch, metric) of the first non-finite loss or gradient, or None."""
        bad_loss = ~np.isfinite(self.loss)
        bad = bad_loss | ~np.isfinite(self.grad_abs_mean)
        if not bad.any():
            return None
        offset = int(np.argmax(bad))
        return self.start + offset, "loss" if bad_loss[offset] else "gradient"

    @classmethod
    def concat(cls, parts: list[EpochStats]) -> EpochStats:
        """Consecutive statistics as one; a step trace, and the step losses' spread, only where
        every part has one."""
        if not parts:
            return cls.empty()
        keys = list(dict.fromkeys(k for p in parts for k in p.extra))  # a part without one: NaN
        extra = {k: np.concatenate([p.extra.get(k, np.full(len(p), np.nan)) for p in parts])
                 for k in keys}
        traces = [p.trace for p in parts if p.trace is not None]
        trace = StepTrace.concat(traces) if len(traces) == len(parts) else None
        stds = [p.loss_std for p in parts if p.loss_std is not None]
        steps = [p.steps for p in parts if p.steps is not None]
        spread = len(stds) == len(steps) == len(parts)
        return cls(parts[0].start, *(np.concatenate([getattr(p, m) for p in parts])
                                     for m in EPOCH_METRICS), extra=extra,
                   initial_loss=parts[0].initial_loss, trace=trace,
                   loss_std=np.concatenate(stds) if spread else None,
                   steps=np.concatenate(steps) if spread else None)

    @classmethod
    def empty(cls) -> EpochStats:
        return cls(0, *(np.empty(0) for _ in EPOCH_METRICS))

    def to_frame(self):  # type: ignore[no-untyped-def]
        import pandas as pd

        return pd.DataFrame({m: self.metric(m) for m in self.names}, index=self.epochs)


assert tuple(f.name for f in fields(EpochStats))[1:1 + len(EPOCH_METRICS)] == EPOCH_METRICS
