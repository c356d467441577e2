"""Batched trials: several trials of one objective run as one tensor program.

The parameters of all trials are stacked (one row per trial, all starting from the
objective's initial parameters). The forward pass is the objective's ``batched_loss`` if it
has one, else one ``torch.func.vmap`` of its loss over the rows; one backward pass on the
summed losses gives each row the gradient of its own loss. Each optimizer's update rule runs
over its rows with per-row hyperparameters (``sweeps.batched.rules``), and each row's learning
rate comes from torch's own scheduler for that trial (``sweeps.batched.lr_tables``), so every
trial follows its sequential trajectory while the per-epoch Python overhead is paid once per
batch. Trials of a mini-batch objective batch the same way over each mini-batch
(``sweeps.batched.minibatch``) where the objective can stack them (``batch_losses``).

Statistics are recorded for the whole batch and handed to each trial's observers per chunk,
so pruning and tracking work per trial, and a trial that ends (pruned, failed) is handed to
``on_result`` when it does. Which trials batch is decided before the first epoch:
configurations no rule repeats (RMSprop without momentum) run sequentially, and so does the
whole batch, with one warning, if ``vmap`` cannot trace the objective's loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sweeps.batched.rules import RULES
from sweeps.batched.stack import OnResult, TrialStack, run_together
from sweeps.optim.optimizers import group_options
from sweeps.optim.schedulers import SCHEDULERS
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import (
    ObjectiveStartError,
    Observer,
    TrainResult,
    default_chunk,
    train,
)
from sweeps.training.stats import EpochStats

if TYPE_CHECKING:
    import torch

    from objectives import Objective
    from sweeps.batched.minibatch import MiniBatchBatch

__all__ = ["Joiners", "batchable", "train_batch"]

log = logging.getLogger(__name__)


def batchable(hp: Hyperparams) -> bool:
    """True if ``hp`` can join a batch: a stacked rule repeats its optimizer's code path."""
    rule = RULES.get(hp.optimizer)
    return (rule is not None and hp.scheduler in SCHEDULERS
            and rule.supports(group_options(hp.optimizer, hp.lr, hp.options)))


_EXPLAINED: set[tuple[str, str]] = set()  # (objective, why) already logged


@dataclass
class Joiners:
    """Trials that join a running batch: their configurations and observers, whom to tell of
    each one's end (``on_result(k, result)``, ``k`` indexing them) and of the stacks they
    train in (``on_stacks(groups)``, groups of ``k``)."""

    hps: list[Hyperparams]
    observers: list[tuple[Observer, ...]]
    on_result: OnResult
    on_stacks: Callable[[list[list[int]]], None] | None = None


Asker = Callable[[int], "Joiners | None"]  # rows ended so far -> trials to start now


def train_batch(
    objective: Objective,
    hps: list[Hyperparams],
    epochs: int,
    *,
    device: str | torch.device = "cpu",
    observers: list[tuple[Observer, ...]] | None = None,
    chunk: int | None = None,
    per_tensor: bool = True,
    log_steps: bool = False,
    on_result: OnResult | None = None,
    width: int | None = None,
    on_stacks: Callable[[list[list[int]]], None] | None = None,
    ask: Asker | None = None,
) -> list[TrainResult]:
    """Train every configuration of ``hps`` on ``objective``; one result per configuration,
    in order. Configurations that cannot be batched run sequentially, and so do all trials of
    a mini-batch objective that cannot stack its trials (no ``batch_losses``).
    ``per_tensor`` and ``log_steps`` as in ``sweeps.training.loop.train``; ``on_result(i,
    result)`` is called as each configuration ends, before the others have.

    The batchable configurations (two or more) train in lockstep as stacks of at most
    ``width`` rows each (None: one stack; ``sweeps.batched.sizing`` measures the fastest), so
    that they prune each other at every report whatever the width: the width changes the
    speed, not the study. ``on_stacks(groups)`` hears, before the first epoch, which
    configurations each stack holds, in the order of its rows (``sweeps.batched.replay``).

    ``ask(ended)``, asked after each chunk with the rows ended so far, may return trials
    that join the running stacks: they start at once, in stacks of their own (at most
    ``width`` rows), beside the stacks still running; their results go to their own
    ``on_result``, not into the list returned."""

    observers = observers if observers is not None else [() for _ in hps]
    members = sorted((b for b, hp in enumerate(hps) if batchable(hp)),
                     key=lambda b: list(RULES).index(hps[b].optimizer))
    stacks: list[TrialStack] = []
    groups: list[list[int]] = []
    if len(members) >= 2:
        step = width or len(members)
        groups = [members[start:start + step] for start in range(0, len(members), step)]
        for group in groups:
            stack = batched_stack(objective, [hps[b] for b in group], epochs, device,
                                  per_tensor, [observers[b] for b in group], chunk,
                                  _told(on_result, group), log_steps)
            if stack is None:
                stacks = []
                break
            stacks.append(stack)
    batched = members if stacks else []
    if stacks and on_stacks is not None:
        on_stacks(groups)
    results: list[TrainResult | None] = [None] * len(hps)
    for b, hp in enumerate(hps):
        if b not in batched:
            results[b] = train(objective, hp, epochs, device=device, observers=observers[b],
                               chunk=chunk, per_tensor=per_tensor, log_steps=log_steps)
            if on_result is not None:
                on_result(b, results[b])
    if stacks:
        refill = None if ask is None else _refill(objective, epochs, device, per_tensor, chunk,
                                                  log_steps, width, ask)
        for b, result in zip(batched, (r for rs in run_together(stacks, refill) for r in rs)):
            results[b] = result
    return [r for r in results if r is not None]


def _refill(objective: Objective, epochs: int, device: str | torch.device, per_tensor: bool,
            chunk: int | None, log_steps: bool, width: int | None, ask: Asker
            ) -> Callable[[int], list[TrialStack]]:
    """``run_together``'s refill: the trials ``ask`` gives, as new stacks of at most
    ``width`` rows (one that no rule repeats trains alone, there and then)."""

    def refill(ended: int) -> list[TrialStack]:
        joiners = ask(ended)
        if joiners is None or not joiners.hps:
            return []
        hps, observers = joiners.hps, joiners.observers
        members = sorted((k for k, hp in enumerate(hps) if batchable(hp)),
                         key=lambda k: list(RULES).index(hps[k].optimizer))
        step = width or len(members) or 1
        groups = [members[start:start + step] for start in range(0, len(members), step)]
        stacks = []
        for group in groups:
            stack = batched_stack(objective, [hps[k] for k in group], epochs, device,
                                  per_tensor, [observers[k] for k in group], chunk,
                                  _told(joiners.on_result, group), log_steps)
            assert stack is not None  # the running stacks are of the same objective
            stacks.append(stack)
        if groups and joiners.on_stacks is not None:
            joiners.on_stacks(groups)
        for k, hp in enumerate(hps):
            if k not in members:
                joiners.on_result(k, train(objective, hp, epochs, device=device,
                                           observers=observers[k], chunk=chunk,
                                           per_tensor=per_tensor, log_steps=log_steps))
        return stacks

    return refill


def batched_stack(objective: Objective, hps: list[Hyperparams], epochs: int,
                  device: str | torch.device, per_tensor: bool = True,
                  observers: list[tuple[Observer, ...]] | None = None,
                  chunk: int | None = None, on_result: OnResult | None = None,
                  log_steps: bool = False) -> _FullBatch | MiniBatchBatch | None:
    """The batch that trains ``hps`` (all ``batchable``, in ``RULES`` order) as one program,
    or None (and one warning a process saying why) where the objective cannot stack them."""
    from objectives import is_minibatch

    observers = observers if observers is not None else [() for _ in hps]
    batch: _FullBatch | MiniBatchBatch
    if is_minibatch(objective):
        from sweeps.batched.minibatch import MiniBatchBatch, stackable

        reason = stackable(objective)
        if reason is not None:
            _explain(objective.name, reason)
            return None
        batch = MiniBatchBatch(objective, hps, epochs, device, observers, chunk, per_tensor,
                               on_result, log_steps)
    else:
        batch = _FullBatch(objective, hps, epochs, device, observers, chunk, per_tensor,
                           on_result)
    reason = batch.unbatchable()
    if reason is not None:
        _explain(objective.name, reason)
        return None
    return batch


def _told(on_result: OnResult | None, members: list[int]) -> OnResult | None:
    """``on_result`` for a batch whose row ``i`` is configuration ``members[i]``."""
    if on_result is None:
        return None
    return lambda i, result: on_result(members[i], result)


def _explain(name: str, reason: str) -> None:
    """Log why trials of objective ``name`` run one at a time: once a process, not every
    batch."""
    if (name, reason) not in _EXPLAINED:
        _EXPLAINED.add((name, reason))
        log.warning("trials of %s run one at a time: %s", name, reason)


class _FullBatch(TrialStack):
    """One batch of trials of a full-batch objective: one step an epoch."""

    def __init__(self, objective: Objective, hps: list[Hyperparams], epochs: int,
                 device: str | torch.device, observers: list[tuple[Observer, ...]],
                 chunk: int | None, per_tensor: bool = True,
                 on_result: OnResult | None = None) -> None:
        import torch

        from sweeps.training.recorder import chunk_capacity, tracked_tensors

        super().__init__(objective, hps, epochs, device, observers, on_result=on_result)
        native = getattr(objective, "batched_loss", None)  # optional: rows of stacked params
        self.native = callable(native)
        self.loss_fn = native if callable(native) else torch.func.vmap(
            lambda params: objective.loss(params))
        capacity = chunk_capacity(self.params, chunk or default_chunk(epochs))
        self.recorder = _StackedRecorder(self.params, capacity,
                                         tracked_tensors(self.names, per_tensor))

    def probe_losses(self) -> torch.Tensor:
        return self.losses()

    def first_loss(self, batched: RuntimeError) -> None:
        if self.native:  # the objective's own batched loss failed
            raise ObjectiveStartError(f"batched_loss: RuntimeError: {batched}") from batched
        try:
            self.objective.loss(self.row(0))
        except Exception as exc:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc

    def losses(self) -> torch.Tensor:
        return self.loss_fn(self.by_name())

    def step(self, epoch: int) -> torch.Tensor:
        """One epoch's step of every row; returns the rows' losses."""
        import torch

        for p in self.params:
            p.grad = None
        losses = self.losses()
        losses.sum().backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self.recorder.record(grads, losses, self.lr_host[epoch])
        self.update(grads, epoch)
        return losses

    def probe_step(self, i: int) -> None:
        """A step for ``sweeps.batched.sizing`` to time (the batch is thrown away after)."""
        self.recorder.size = 0
        self.step(0)

    def train_epoch(self, epoch: int) -> None:
        losses = self.step(epoch)
        if self.on_loss:
            self.step_on_loss(epoch, losses.detach().tolist())

    def final(self, i: int, params: dict[str, torch.Tensor]
              ) -> tuple[float, dict[str, torch.Tensor] | None]:
        import torch

        with torch.no_grad():  # unbatched, exactly as the sequential loop computes it
            return float(self.objective.loss(params)), None


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

    def for_rows(self, params: list[torch.Tensor]) -> _StackedRecorder:
        """This recorder, right after a drain, for ``params`` (the rows still training)."""
        new = _StackedRecorder(params, self.capacity, self.tensors)
        new.start = self.start
        return new

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
