"""Batched trials: several trials of one objective run as one tensor program.

The parameters of all trials are stacked (one row per trial, all starting from the
objective's initial parameters). The forward pass is the objective's ``batched_loss`` if it
has one, else one ``torch.func.vmap`` of its loss over the rows; one backward pass on the
summed losses gives each row the gradient of its own loss. Each optimizer's update rule runs
over its rows with per-row hyperparameters (``sweeps.batched.rules``), and each row's learning
rate comes from torch's own scheduler for that trial (``sweeps.batched.lr_tables``), so every
trial follows its sequential trajectory while the per-epoch Python overhead is paid once per
batch.

Statistics are recorded for the whole batch and handed to each trial's observers per chunk,
so pruning and tracking work per trial. Which trials batch is decided before the first epoch:
configurations no rule repeats (RMSprop without momentum) run sequentially, and so does the
whole batch, with one warning, if ``vmap`` cannot trace the objective's loss. Trials of a
mini-batch objective (``objectives.MiniBatchObjective``) are not batched yet: they run
sequentially, and the log says so once.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from sweeps.batched.lr_tables import TABULATED, LossSchedule, lr_tables
from sweeps.batched.rules import RULES
from sweeps.optim.optimizers import group_options
from sweeps.optim.schedulers import SCHEDULERS
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import (
    ObjectiveStartError,
    Observer,
    Status,
    TrainResult,
    default_chunk,
    finish,
    train,
)
from sweeps.training.stats import EpochStats

if TYPE_CHECKING:
    import torch

    from objectives import Objective

__all__ = ["batchable", "train_batch"]

log = logging.getLogger(__name__)


def batchable(hp: Hyperparams) -> bool:
    """True if ``hp`` can join a batch: a stacked rule repeats its optimizer's code path."""
    rule = RULES.get(hp.optimizer)
    return (rule is not None and hp.scheduler in SCHEDULERS
            and rule.supports(group_options(hp.optimizer, hp.lr, hp.options)))


_EXPLAINED: set[tuple[str, str]] = set()  # (objective, why) already logged


def train_batch(
    objective: Objective,
    hps: list[Hyperparams],
    epochs: int,
    *,
    device: str | torch.device = "cpu",
    observers: list[tuple[Observer, ...]] | None = None,
    chunk: int | None = None,
    per_tensor: bool = True,
) -> list[TrainResult]:
    """Train every configuration of ``hps`` on ``objective``; one result per configuration,
    in order. Configurations that cannot be batched run sequentially, and so do all trials of
    a mini-batch objective. ``per_tensor`` as in ``sweeps.training.loop.train``."""
    from objectives import is_minibatch

    observers = observers if observers is not None else [() for _ in hps]
    members = sorted((b for b, hp in enumerate(hps) if batchable(hp)),
                     key=lambda b: list(RULES).index(hps[b].optimizer))
    if len(members) >= 2 and is_minibatch(objective):
        _explain(objective.name, "mini-batch objectives are not batched yet")
        members = []
    batch = None
    if len(members) >= 2:
        batch = _Batch(objective, [hps[b] for b in members], epochs, device,
                       [observers[b] for b in members], chunk, per_tensor)
        reason = batch.unbatchable()
        if reason is not None:
            _explain(objective.name, reason)
            batch = None
    batched = members if batch is not None else []
    results: list[TrainResult | None] = [None] * len(hps)
    for b, hp in enumerate(hps):
        if b not in batched:
            results[b] = train(objective, hp, epochs, device=device, observers=observers[b],
                               chunk=chunk, per_tensor=per_tensor)
    if batch is not None:
        for b, result in zip(batched, batch.run()):
            results[b] = result
    return [r for r in results if r is not None]


def _explain(name: str, reason: str) -> None:
    """Log why trials of objective ``name`` run one at a time: once a process, not every
    batch."""
    if (name, reason) not in _EXPLAINED:
        _EXPLAINED.add((name, reason))
        log.warning("trials of %s run one at a time: %s", name, reason)


class _Batch:
    """One batch of trials sharing stacked parameter tensors (one row per trial)."""

    def __init__(self, objective: Objective, hps: list[Hyperparams], epochs: int,
                 device: str | torch.device, observers: list[tuple[Observer, ...]],
                 chunk: int | None, per_tensor: bool = True) -> None:
        import torch

        from sweeps.training.recorder import chunk_capacity, tracked_tensors

        self.objective, self.hps, self.epochs, self.observers = objective, hps, epochs, observers
        self.device = torch.device(device)
        try:
            initial = objective.init_params(self.device)
        except Exception as exc:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
        self.names = list(initial)
        size = len(hps)
        self.params = [initial[n].detach().unsqueeze(0).repeat(size, *([1] * initial[n].dim()))
                       .requires_grad_(True) for n in self.names]
        like = self.params[0]
        self.rules = []
        start = 0
        for name in RULES:
            rows = [i for i, hp in enumerate(hps) if hp.optimizer == name]
            if rows:
                stop = start + len(rows)
                settings = [group_options(name, hps[i].lr, hps[i].options) for i in rows]
                self.rules.append(RULES[name](slice(start, stop), settings, like))
                start = stop
        self.on_loss = {i: LossSchedule(hp.scheduler, hp.lr, epochs, hp.options)
                        for i, hp in enumerate(hps) if hp.scheduler not in TABULATED}
        tabulated = iter(lr_tables([hp for i, hp in enumerate(hps) if i not in self.on_loss],
                                   epochs))
        tables = [[self.on_loss[i].lr] * epochs if i in self.on_loss else next(tabulated)
                  for i in range(size)]
        self.lr = torch.tensor(tables, dtype=like.dtype, device=self.device).T.contiguous()
        self.lr_host = np.asarray(tables).T
        native = getattr(objective, "batched_loss", None)  # optional: rows of stacked params
        self.native = callable(native)
        self.loss_fn = native if callable(native) else torch.func.vmap(
            lambda params: objective.loss(params))
        capacity = chunk_capacity(self.params, chunk or default_chunk(epochs))
        self.recorder = _StackedRecorder(self.params, capacity,
                                         tracked_tensors(self.names, per_tensor))
        self.parts: list[list[EpochStats]] = [[] for _ in hps]
        self.results: list[TrainResult | None] = [None] * size
        self.active = list(range(size))
        self.live_rules = list(self.rules)  # rules with a row still training

    def unbatchable(self) -> str | None:
        """Why the objective's loss cannot be batched, or None: one forward pass before the
        first epoch. vmap raises RuntimeError on what it cannot batch (data-dependent control
        flow, ``.item()``, dynamic shapes); a native ``batched_loss`` may return the wrong
        shape. Anything else is the objective's own failure, as in the sequential loop."""
        try:
            probe = self.losses()
        except RuntimeError as exc:
            if self.native:
                raise ObjectiveStartError(f"batched_loss: RuntimeError: {exc}") from exc
            self.first_loss()  # a loss that fails without vmap too: the objective's failure
            return f"vmap cannot trace its loss ({exc})"
        except Exception as exc:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
        if probe.shape != (len(self.hps),):
            return f"its batched loss has shape {tuple(probe.shape)}, not ({len(self.hps)},)"
        return None

    def first_loss(self) -> None:
        """The plain loss of the first row; ``ObjectiveStartError`` if it fails."""
        try:
            self.objective.loss({n: p[0].detach() for n, p in zip(self.names, self.params)})
        except Exception as exc:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc

    def losses(self) -> torch.Tensor:
        return self.loss_fn(dict(zip(self.names, self.params)))

    def run(self) -> list[TrainResult]:
        import torch

        epoch = 0
        try:
            for epoch in range(self.epochs):
                for p in self.params:
                    p.grad = None
                losses = self.losses()
                losses.sum().backward()
                grads = [p.grad if p.grad is not None else torch.zeros_like(p)
                         for p in self.params]
                self.recorder.record(grads, losses, self.lr_host[epoch])
                lr = self.lr[epoch]
                with torch.no_grad():
                    for rule in self.live_rules:
                        rule.step(self.params, grads, lr[rule.rows])
                if self.on_loss:
                    self.step_on_loss(epoch, losses.detach().tolist())
                if self.recorder.full or epoch == self.epochs - 1:
                    self.flush()
                    if not self.active:
                        break
        except Exception as exc:
            for i in list(self.active):
                self.end(i, "failed", f"{type(exc).__name__}: {exc}", epoch)
        except BaseException:  # interrupted: hand the epochs already run to the observers
            if self.recorder.size:
                self.flush()
            raise
        for i in list(self.active):
            self.end(i, "complete", None, None)
        return [r for r in self.results if r is not None]

    def step_on_loss(self, epoch: int, losses: list[float]) -> None:
        """Step each schedule that steps on its row's loss; a new lr sets every later epoch's."""
        for i, schedule in self.on_loss.items():
            new_lr = schedule.step(losses[i])
            if new_lr is not None and epoch + 1 < self.epochs:
                self.lr[epoch + 1 :, i] = new_lr
                self.lr_host[epoch + 1 :, i] = new_lr

    def flush(self) -> None:
        for i, stats in enumerate(self.recorder.drain()):
            if i not in self.active:
                continue
            bad = stats.first_nonfinite()
            if bad is not None:
                stats = stats.head(bad[0] - stats.start)
            self.parts[i].append(stats)
            stop = False
            for observer in self.observers[i]:
                stop = observer.on_chunk(stats) or stop
            if bad is not None:
                self.end(i, "failed", f"non-finite {bad[1]}", bad[0])
            elif stop:
                self.end(i, "pruned", None, None)

    def end(self, i: int, status: Status, failure: str | None,
            failure_epoch: int | None) -> None:
        import torch

        params = {n: p[i].detach().clone() for n, p in zip(self.names, self.params)}
        final = math.nan
        if status != "failed":
            with torch.no_grad():  # unbatched, exactly as the sequential loop computes it
                final = float(self.objective.loss(params))
            if not math.isfinite(final):
                status, failure, failure_epoch = "failed", "non-finite final loss", self.epochs
        kept = params if status != "failed" else None
        self.results[i] = finish(self.observers[i], self.parts[i], status, final, failure,
                                 failure_epoch, kept)
        self.active.remove(i)
        live = set(self.active)  # a rule whose rows all ended stops updating them
        self.live_rules = [r for r in self.rules
                           if live.intersection(range(r.rows.start, r.rows.stop))]


class _StackedRecorder:
    """Per-epoch copies of the stacked parameters, gradients, losses and learning rates;
    ``tensors`` names each parameter for its per-tensor statistics (empty: none)."""

    def __init__(self, params: list[torch.Tensor], capacity: int,
                 tensors: tuple[str, ...] = ()) -> None:
        import torch

        self.params = params
        self.tensors = tensors
        size = params[0].shape[0]
        self.theta = [p.detach().new_empty((capacity + 1, *p.shape)) for p in params]
        self.grad = [p.detach().new_empty((capacity, *p.shape)) for p in params]
        self.loss = torch.empty((capacity, size), dtype=params[0].dtype,
                                device=params[0].device)
        self.lr = np.empty((capacity, size))
        self.capacity = capacity
        self.start = 0
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size == self.capacity

    def record(self, grads: list[torch.Tensor], losses: torch.Tensor, lrs: np.ndarray) -> None:
        i = self.size
        for theta, grad, p, g in zip(self.theta, self.grad, self.params, grads):
            theta[i].copy_(p.detach())
            grad[i].copy_(g)
        self.loss[i].copy_(losses.detach())
        self.lr[i] = lrs
        self.size = i + 1

    def drain(self) -> list[EpochStats]:
        from sweeps.training.recorder import reduce_chunk, tensor_extra

        n = self.size
        for theta, p in zip(self.theta, self.params):
            theta[n].copy_(p.detach())
        rows = reduce_chunk(self.loss, self.theta, self.grad, n, dims=2,
                            per_tensor=bool(self.tensors))  # (metrics, epochs, trials)
        out = [EpochStats(self.start, *(r[:, b].copy() for r in rows[:4]),
                          self.lr[:n, b].copy(), extra=tensor_extra(self.tensors, rows[4:, :, b]))
               for b in range(rows.shape[2])]
        self.start += n
        self.size = 0
        return out
